#!/usr/bin/env python3
"""An independent verifier of loa's proof log, written from ARCHITECTURE.md ("Event encoding")
alone, with the `rfc8785` and `cryptography` packages: CI runs it on real exports so that the
encoding stays one any language can check, not one only our Rust code writes.

usage: verify_proof.py FILE --public-key HEX [--expect-head SEQ:HASH] [--station-id ID]
                       [--accept-key-replacement SEQ ...]
Exit 0 and "ok ..." when the file verifies; exit 1 and "refused: seq N: why" when it does not.
"""

import argparse
import hashlib
import json
import re
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS = "0" * 64
SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})","sig":"([0-9a-f]{128})"\}\Z')


class Refused(Exception):
    pass

# "Event kinds" in ARCHITECTURE.md, copied by hand: name -> (type, nullable, may be absent).
# Types: "text", "hex64", "integer", "boolean", or a tuple of the allowed strings.
MAX_SAFE = 2**53 - 1
PRIORITY = ("normal", "priority", "emergency")
KINDS_ = ("station_started station_stopped clip_added clip_retired token_created token_revoked "
          "airing_started airing_ended amplifier_hook_failed slot_missed log_damaged key_rotated "
          "key_replaced log_behind_receipt log_tampered bulletin_received bulletin_refused "
          "bulletin_withdrawn").split()


def member(name, kind_of_value, nullable=False, absent=False):
    return name, (kind_of_value, nullable, absent)


COMMON = dict([member("seq", "integer"), member("prev_hash", "hex64"), member("station_id", "text"),
               member("kind", tuple(KINDS_)), member("at", "integer")])
CLIP = [member("clip_id", "integer"), member("clip_sha256", "hex64"), member("title", "text"),
        member("topic", "text"), member("language", "text"), member("priority", PRIORITY),
        member("duration_ms", "integer"), member("valid_from", "text", True), member("valid_until", "text", True)]
PLAN = [member("slot", "text", True), member("peak", "boolean"), member("scheduled_at", "integer", True),
        member("clip_id", "integer"), member("clip_sha256", "hex64"), member("title", "text"),
        member("topic", "text"), member("language", "text"), member("priority", PRIORITY),
        member("planned_ms", "integer"), member("gain_cdb", "integer"), member("quota", "text", True, True),
        member("before_air_ok", "boolean", False, True), member("before_air_detail", "text", False, True)]
EVIDENCE = [member("started_at", "integer", True), member("ended_at", "integer", True),
            member("played_ms", "integer"), member("peak_cdbfs", "integer"), member("rms_cdbfs", "integer"),
            member("silent_ms", "integer"), member("first_frame_latency_ms", "integer", True),
            member("status", ("completed", "partial", "interrupted", "preempted", "failed")),
            member("reason", "text", True)]
SYNCED = [member("clock_synced", "boolean")]
TOKEN = [member("token_id", "integer"), member("role", ("operator", "district")), member("label", "text")]
KINDS = {
    "station_started": [member("version", "text"), member("public_key", "hex64"),
                        member("last_alive_at", "integer", True), member("clock_behind_ms", "integer"),
                        member("clock_waited_ms", "integer"), member("encoding", ("loa-1",), False, True)] + SYNCED,
    "station_stopped": [member("reason", "text")],
    "clip_added": CLIP,
    "clip_retired": CLIP + [member("reason", "text", False, True)],
    "token_created": TOKEN,
    "token_revoked": TOKEN,
    "airing_started": PLAN + SYNCED,
    "airing_ended": [member("airing_seq", "integer")] + PLAN + EVIDENCE + SYNCED,
    "amplifier_hook_failed": [member("hook", ("before_air", "after_air")), member("slot", "text", True),
                              member("detail", "text", True)] + SYNCED,
    "slot_missed": [member("slot", "text"), member("peak", "boolean"), member("scheduled_at", "integer"),
                    member("last_scheduled_at", "integer", False, True), member("count", "integer", False, True),
                    member("status", ("missed",)),
                    member("reason", ("station_down", "previous_airing_overran", "clock_jumped",
                                      "no_eligible_clip"))] + SYNCED,
    "log_damaged": [member("damaged_seq", "integer"), member("stored_hash", "text"),
                    member("computed_hash", "text"), member("reason", "text")],
    "key_rotated": [member("public_key", "hex64"), member("new_public_key", "hex64")],
    "key_replaced": [member("public_key", "hex64"), member("old_public_key", "hex64", True),
                     member("reason", "text")],
    "log_behind_receipt": [member("office", "text"), member("receipt_seq", "integer"),
                           member("receipt_hash", "hex64"), member("head_seq", "integer")],
    "log_tampered": [member("reason", "text"), member("checked_seq", "integer", True),
                     member("checked_hash", "text", True), member("head_seq", "integer")],
    "bulletin_received": [member("bulletin_id", "integer"), member("office", "text"),
                          member("manifest_hash", "hex64"), member("clip_id", "integer"),
                          member("clip_sha256", "hex64"), member("priority", PRIORITY),
                          member("valid_from", "text"), member("valid_until", "text"),
                          member("airings", "integer")],
    "bulletin_refused": [member("bulletin_id", "integer", True), member("manifest_hash", "hex64"),
                         member("reason", ("bad_signature", "malformed", "not_for_this_station", "expired",
                                           "hash_mismatch", "not_playable", "withdrawn")),
                         member("detail", "text")],
    "bulletin_withdrawn": [member("bulletin_id", "integer"), member("clip_id", "integer", True)],
}
HEX64 = re.compile(r"[0-9a-f]{64}\Z")


def value_fits(value, kind_of_value):
    if isinstance(kind_of_value, tuple):
        return isinstance(value, str) and value in kind_of_value
    if kind_of_value == "text":
        return isinstance(value, str)
    if kind_of_value == "hex64":
        return isinstance(value, str) and HEX64.match(value) is not None
    if kind_of_value == "boolean":
        return isinstance(value, bool)
    # integer: a JSON number without fraction or exponent (json gives int only then), not bool
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_SAFE <= value <= MAX_SAFE


def check_schema(event, where):
    def check(name, spec):
        kind_of_value, nullable, absent = spec
        if name not in event:
            if not absent:
                raise Refused(f"{where}: field `{name}`: missing")
            return
        value = event[name]
        if value is None and nullable:
            return
        if not value_fits(value, kind_of_value):
            raise Refused(f"{where}: field `{name}`: {value!r} is not {kind_of_value}")

    for name, spec in COMMON.items():
        check(name, spec)
    allowed = dict(COMMON, **dict(KINDS[event["kind"]]))
    for name, spec in allowed.items():
        check(name, spec)
    for name in event:
        if name not in allowed:
            raise Refused(f"{where}: field `{name}`: not a member of {event['kind']} events")
    if event["kind"] == "slot_missed":
        check_run(event, where)


def check_run(event, where):
    # ARCHITECTURE.md, "Event kinds": a run of missed instants names its last instant and its
    # count together, at least two, the last after the first, at most one instant a second.
    first, last, count = event["scheduled_at"], event.get("last_scheduled_at"), event.get("count")
    if last is None and count is None:
        return
    if last is None or count is None:
        raise Refused(f"{where}: a run of missed slots names both last_scheduled_at and count")
    if last <= first:
        raise Refused(f"{where}: field `last_scheduled_at`: not after scheduled_at")
    if count < 2:
        raise Refused(f"{where}: field `count`: a run is two instants or more")
    if count - 1 > (last - first) // 1000:
        raise Refused(f"{where}: field `count`: more than one instant a second")



def no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise Refused(f"member {key!r} appears twice")
        seen[key] = value
    return seen


def public_key(hex_key):
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key))


def lines_of(data):
    if data.startswith(b'{"events":['):
        # A JSON page: the elements of "events" are export lines, byte for byte, separated by
        # ",\n" (a line never holds a raw line end: JSON escapes it).
        json.loads(data)  # the page as a whole must be JSON
        inner = data[len(b'{"events":[') : data.rindex(b'],"head":')]
        yield from enumerate(inner.split(b",\n") if inner else [], 1)
        return
    if data and not data.endswith(b"\n"):
        raise Refused("the last line has no line end")
    for number, line in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        yield number, line


def verify(data, pinned, expect_head, station_id, accepted):
    key_hex = pinned
    last = None  # (seq, hash)
    count = 0
    for number, line in lines_of(data):
        match = SUFFIX.search(line)
        if not match or not line.startswith(b"{"):
            raise Refused(f"line {number}: not an export line")
        digest_hex, sig_hex = match.group(1).decode(), match.group(2).decode()
        body = line[: match.start()] + b"}"
        event = json.loads(body, object_pairs_hook=no_duplicates)
        seq = event.get("seq")
        where = f"seq {seq} (line {number})"
        if any(isinstance(v, (dict, list, float)) for v in event.values()):
            raise Refused(f"{where}: not a flat event of strings, integers, booleans and null")
        if rfc8785.dumps(event) != body:
            raise Refused(f"{where}: not the canonical encoding")
        if hashlib.sha256(body).hexdigest() != digest_hex:
            raise Refused(f"{where}: hash does not match the contents")
        check_schema(event, where)
        if station_id is None:
            station_id = event["station_id"]
        elif event["station_id"] != station_id:
            raise Refused(f"{where}: station_id {event['station_id']!r} is not {station_id!r}")
        if last is None:
            if expect_head is not None:
                if (seq, digest_hex) != expect_head:
                    raise Refused(f"{where}: does not begin with the head held, {expect_head}")
                last, count = (seq, digest_hex), 1
                continue  # checked by the previous pull; the pinned key is the one after it
            if seq != 1 or event["prev_hash"] != GENESIS:
                raise Refused(f"{where}: a whole log begins at seq 1 from the genesis hash")
        elif seq != last[0] + 1 or event["prev_hash"] != last[1]:
            raise Refused(f"{where}: does not follow seq {last[0]}")

        kind, signer, next_key = event["kind"], key_hex, None
        if kind == "station_started" and event["public_key"] != key_hex:
            raise Refused(f"{where}: declares key {event['public_key']}, checked with {key_hex}")
        if kind == "key_rotated":
            if event["public_key"] != key_hex:
                raise Refused(f"{where}: rotates from a key not in force")
            next_key = event["new_public_key"]
        if kind == "key_replaced":
            if seq not in accepted:
                raise Refused(f"{where}: key replaced (old key lost); not accepted")
            if event["old_public_key"] not in (None, key_hex):
                raise Refused(f"{where}: replaces a key not in force")
            signer = next_key = event["public_key"]
        try:
            public_key(signer).verify(bytes.fromhex(sig_hex), bytes.fromhex(digest_hex))
        except InvalidSignature:
            raise Refused(f"{where}: signature does not verify") from None
        if next_key is not None:
            key_hex = next_key
        last, count = (seq, digest_hex), count + 1
    if last is None:
        raise Refused("the file holds no events")
    return count, last, key_hex


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--expect-head")
    parser.add_argument("--station-id")
    parser.add_argument("--accept-key-replacement", type=int, action="append", default=[])
    args = parser.parse_args()
    head = None
    if args.expect_head:
        seq, digest = args.expect_head.split(":")
        head = (int(seq), digest)
    data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    try:
        count, (seq, digest), key = verify(data, args.public_key, head, args.station_id, set(args.accept_key_replacement))
    except (Refused, ValueError, KeyError, TypeError) as e:
        print(f"refused: {e}")
        sys.exit(1)
    print(f"ok {count} events, head {seq}:{digest}, key {key}")


if __name__ == "__main__":
    main()
