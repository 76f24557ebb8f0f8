#!/usr/bin/env python3
"""Outage benchmark: how soon a station is on air after being off for a long time, and what its
catch-up writes (issue 32).

A station with a slot every 4 s airs once and stops; a copy of its data directory is then started
with its wall clock (libfaketime) 0 days (the peer: the same station restarted at once), 1 day
and 30 days later (21,600 and 648,000 slot instants missed). For each, from the process's start:

- `station on air`: when its log says so (real time, polled every 5 ms);
- first frame: when the device took the first frame of a slot (the airing's `started_at`, in
  the station's clock, less the clock's offset);
- catch-up: the events written from `station_started` up to the first `airing_started`, their
  bytes as exported, the slot instants they record missed, and what the process wrote to disk
  (`/proc/PID/io` write_bytes) by the first `airing_started`.

Goal: on air (first frame of a slot) within 5 s after 30 days; catch-up bounded in events and
bytes whatever the outage's length. Needs sox, lame and libfaketime (`.ci/setup test`).
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
DAY = 86_400
OUTAGES = [("restart at once (peer)", 0), ("1 day", DAY), ("30 days", 30 * DAY)]


def faketime_library():
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        raise SystemExit("libfaketime is missing: apt-get install faketime (or .ci/setup test)")
    return found[0]


def write_station(dir, tone):
    (dir / "station.toml").write_text(
        '[station]\nid = "bench"\nname = "bench"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n'
        '[[slot]]\nname = "nhanh"\ncron = "*/4 * * * * Mon-Sun"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n'
        f'[[preload]]\nfile = "{tone}"\ntitle = "bench"\ntopic = "cchc"\n')
    (dir / "alsa.conf").write_text(f'pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; file "{dir}/air.raw"; format "raw" }}\n')


def start(dir, extra_env=None):
    env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "alsa.conf"), LOA_LOG="info", **(extra_env or {}))
    return subprocess.Popen([LOA, "--config", dir / "station.toml", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(dir / "log", "w"))


def events(dir):
    out = subprocess.run([LOA, "--config", dir / "station.toml", "airtime", "--format", "jsonl"],
                         capture_output=True, text=True).stdout
    return [(line, json.loads(line)) for line in out.splitlines()]


def wait(what, check, every=0.005, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def log_with(dir, kind, after):
    """The log, once an event of `kind` follows the first `after` events (else None)."""
    log = events(dir)
    return log if any(e["kind"] == kind for _, e in log[after:]) else None


def written_bytes(pid):
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def after_outage(base, work, name, seconds, library):
    dir = work / name.split()[0]
    shutil.copytree(base, dir)
    before = len(events(dir))
    offset = dir / "clock-offset"
    offset.write_text(f"+{seconds}\n")
    env = {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(offset), "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    started = time.time()
    daemon = start(dir, env)
    try:
        wait("station on air", lambda: "station on air" in (dir / "log").read_text())
        on_air = time.time() - started
        wait("the first slot's airing", lambda: log_with(dir, "airing_started", before), every=0.05)
        disk = written_bytes(daemon.pid)
        log = wait("its end", lambda: log_with(dir, "airing_ended", before), every=0.05)
    finally:
        daemon.terminate()
        daemon.wait()
    new = log[before:]
    begun = next(i for i, (_, e) in enumerate(new) if e["kind"] == "station_started")
    first = next(i for i, (_, e) in enumerate(new) if e["kind"] == "airing_started")
    catch_up = new[begun + 1:first]  # after station_started, before the first airing
    missed = sum(e.get("count", 1) for _, e in catch_up if e["kind"] == "slot_missed")
    ended = next(e for _, e in new if e["kind"] == "airing_ended")
    first_frame = (ended["started_at"] - seconds * 1000) / 1000 - started
    # The slot's instant, from the process's start: the first frame cannot come before it (an
    # instant that fell just before the start, within its grace, airs at once).
    instant = (ended["scheduled_at"] - seconds * 1000) / 1000 - started
    return {"on_air": on_air, "first_frame": first_frame, "beyond": first_frame - max(instant, 0.0), "events": len(catch_up),
            "bytes": sum(len(line) + 1 for line, _ in catch_up), "missed": missed, "disk": disk}


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    library = faketime_library()
    work = Path(tempfile.mkdtemp())
    try:
        base = work / "base"
        base.mkdir()
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", work / "tone.wav", "synth", "2", "sine", "440", "gain", "-6"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "64", work / "tone.wav", work / "tone.mp3"], check=True)
        write_station(base, work / "tone.mp3")
        daemon = start(base)
        wait("a first airing", lambda: log_with(base, "airing_ended", 0), every=0.1, limit=60)
        daemon.terminate()
        daemon.wait()
        results = [(name, after_outage(base, work, name, seconds, library)) for name, seconds in OUTAGES]
        print("start after an outage, slot every 4 s (from the process's start):")
        for name, r in results:
            print(f"  {name:<23} on air {r['on_air']:5.2f} s, first frame of a slot {r['first_frame']:5.2f} s "
                  f"({r['beyond'] * 1000:.0f} ms after its instant or the start, whichever was later); "
                  f"catch-up {r['events']} events, {r['bytes']} bytes, {r['missed']} slot instants recorded missed; "
                  f"{r['disk'] / 1024:.0f} KiB written to disk by the first airing")
        peer = results[0][1]
        for name, r in results[1:]:
            print(f"  {name}: on air {r['on_air'] / peer['on_air']:.2f}x the restart's, first frame beyond its "
                  f"instant {r['beyond'] / max(peer['beyond'], 0.001):.2f}x, disk written {r['disk'] / max(peer['disk'], 1):.2f}x")
        worst = results[-1][1]
        print(f"goal: first frame within 5 s after 30 days: {'met' if worst['first_frame'] <= 5 else 'NOT met'} "
              f"({worst['first_frame']:.2f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
