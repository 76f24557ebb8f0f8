#!/usr/bin/env python3
"""Attacks from the LAN against the station and the office: one run, figures printed together.

Station: `loa run` (release, `ulimit -n 1024` as systemd's default) airs a 0.5 s bulletin every
two seconds on the real-time-paced ALSA file device. Office: `loa district serve` (same limit).
In every phase `/healthz` (the office: `/api/v1/status`) is polled every 200 ms, and the person
who matters makes a request every 500 ms with a valid token: the station's operator queues the
bulletin (`POST /api/v1/queue`, `next_slot`), the office's clerk opens the dashboard with the
sign-in cookie. The phases, each PHASE_SECONDS (default 20) or, for the station, AIRINGS
airings (default 10):

- idle: nothing else;
- slowloris: SLOW (default 1000) connections from ten hosts that send half a request head and
  keep it alive with a byte a second;
- slow bodies: SLOW connections from ten hosts whose head is whole and whose body (pairing,
  sign-in) trickles a byte every 5 s;
- auth guessing: 20 addresses x 16 connections sending wrong tokens as fast as answered, and
  one more from the operator's own address;
- held churn: 10 addresses opening connections as fast as they can, each held 2 s.

For each: the operator's (clerk's) success rate and latency p50 / p99, the health poll's
failures, how often a slow client (900 ms between connecting and its request, as a phone's TLS
handshake on Wi-Fi) is answered, and for the station the slot start delay (scheduled instant -> first frame pulled,
from the proof log) p50 / p99 / max. Addresses are 127.0.0.x, so it runs on one machine.
Needs sox, lame, pv. Run: `python3 benches/attack.py`.
"""
import collections
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# LOA_BIN: another build to measure the same way (e.g. an older commit's, for a before/after).
LOA = Path(os.environ.get("LOA_BIN", ROOT / "target" / "release" / "loa"))
AIRINGS = int(os.environ.get("AIRINGS", "10"))
SLOW = int(os.environ.get("SLOW", "1000"))
PHASE_SECONDS = int(os.environ.get("PHASE_SECONDS", "20"))
# What the slow client asks for, by port (the station's health, the office's status).
SLOW_CLIENT_PATH = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    values = sorted(values)
    return values[max(0, round(len(values) * p) - 1)] if values else float("nan")


def with_fd_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def loa(*args):
    return subprocess.run([LOA, *map(str, args)], capture_output=True, text=True, check=True).stdout.strip()


def start_station(dir, port, clip):
    dir.mkdir(parents=True)
    config = dir / "station.toml"
    config.write_text(
        f'[station]\nid = "bench"\nname = "bench"\ndata_dir = "data"\n[clips]\nmin_seconds = 0.1\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[[slot]]\nname = "bench"\ncron = "*/2 * * * * *"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n'
        f'[[preload]]\nfile = "{clip}"\ntitle = "bench"\ntopic = "cchc"\n')
    file = f'{{ type file; slave {{ pcm {{ type null }} }}; file "|pv -q -L {48000 * 4} > {dir}/air.raw"; format "raw" }}\n'
    plug = 'pcm.!default { type plug; slave { pcm "air"; format S16_LE; rate 48000; channels 2 } }\n'
    (dir / "alsa.conf").write_text(f"pcm.air {file}{plug}")
    token = loa("--config", config, "token", "create", "--role", "operator", "--label", "bench")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "alsa.conf"), LOA_LOG=os.environ.get("BENCH_LOA_LOG", "warn"))
    daemon = subprocess.Popen([LOA, "--config", config, "run"], env=env, preexec_fn=with_fd_limit,
                              stderr=open(dir / "log", "w"))
    return daemon, token


def start_office(dir, port):
    dir.mkdir(parents=True)
    config = dir / "district.toml"
    config.write_text(f'[district]\nname = "bench"\ndata_dir = "office"\nlisten = "127.0.0.1:{port}"\n'
                      f'pull_every_minutes = 1440\n')
    clerk = loa("district", "--config", config, "token", "create", "--clerk", "bench")
    daemon = subprocess.Popen([LOA, "district", "--config", config, "serve"], preexec_fn=with_fd_limit,
                              stdout=subprocess.DEVNULL, stderr=open(dir / "log", "w"))
    return daemon, clerk


def airings(dir):
    log = subprocess.run([LOA, "--config", dir / "station.toml", "airtime", "--format", "jsonl"],
                         capture_output=True, text=True).stdout
    return [e for e in map(json.loads, log.splitlines()) if e["kind"] == "airing_ended"]


def request(port, method, path, headers=None, body=None, source="127.0.0.1", timeout=10):
    """One request on a fresh connection from `source`: (status or None, milliseconds)."""
    started = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
        connection.request(method, path, body=body, headers=headers or {})
        status = connection.getresponse().status
        connection.close()
    except OSError:
        status = None
    return status, (time.monotonic() - started) * 1000


def poll(port, path, stop, results):
    while not stop.is_set():
        results.append(request(port, "GET", path))
        time.sleep(0.2)


def person(port, method, path, headers, body, ok, stop, results):
    while not stop.is_set():
        status, ms = request(port, method, path, headers, body)
        results.append((status in ok, ms))
        time.sleep(0.5)


def slow_client(port, stop, results):
    """A phone on Wi-Fi: 900 ms between connecting and sending its request (a TLS handshake)."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.9.2", 0))
            time.sleep(0.9)
            s.sendall(b"GET " + SLOW_CLIENT_PATH[port] + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            results.append(s.recv(12)[9:12] == b"200")
            s.close()
        except OSError:
            results.append(False)


def slowloris(port, opening, source, count, stop):
    held = []
    while not stop.is_set():
        while len(held) < count and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1, source_address=(source, 0))
                s.sendall(opening)
                held.append(s)
            except OSError:
                break
        alive = []
        for s in held:
            try:
                s.sendall(b"X")
                alive.append(s)
            except OSError:
                s.close()
        held = alive
        time.sleep(1 if opening.endswith(b": ") else 5)
    for s in held:
        s.close()


def guess(port, method, path, headers, body, source, stop):
    while not stop.is_set():
        request(port, method, path, headers, body, source=source, timeout=5)


def churn(port, source, stop):
    held = collections.deque()
    while not stop.is_set():
        try:
            s = socket.socket()
            s.bind((source, 0))
            s.settimeout(1)
            s.connect(("127.0.0.1", port))
            held.append((time.monotonic(), s))
        except OSError:
            pass
        while held and (time.monotonic() - held[0][0] > 2 or len(held) > 300):
            held.popleft()[1].close()
    for _, s in held:
        s.close()


def phase(name, port, person_args, health_path, attackers, station_dir=None):
    stop = threading.Event()
    health, mine, slow = [], [], []
    SLOW_CLIENT_PATH[port] = health_path.encode()
    threads = [threading.Thread(target=poll, args=(port, health_path, stop, health)),
               threading.Thread(target=person, args=(port, *person_args, stop, mine)),
               threading.Thread(target=slow_client, args=(port, stop, slow))]
    threads += [threading.Thread(target=target, args=args + (stop,)) for target, args in attackers]
    began = int(time.time() * 1000)
    for t in threads:
        t.start()
    delays = None
    if station_dir:
        deadline = time.time() + AIRINGS * 2.5 + 60
        while time.time() < deadline:
            time.sleep(1)
            during = [e for e in airings(station_dir) if (e.get("scheduled_at") or 0) > began + 2000]
            if len(during) >= AIRINGS:
                break
        delays = [e["started_at"] - e["scheduled_at"] for e in during if e["status"] == "completed"]
    else:
        time.sleep(PHASE_SECONDS)
    stop.set()
    for t in threads:
        t.join()
    served = [ms for ok, ms in mine if ok]
    failed = sum(1 for status, _ in health if status != 200)
    line = (f"{name:<16} person {len(served):3}/{len(mine):3} ok, p50 {percentile(served, 0.5):6.1f} ms, "
            f"p99 {percentile(served, 0.99):7.1f} ms | health {failed:3} failed of {len(health):3} | "
            f"slow client {sum(slow):2}/{len(slow):2}")
    if delays is not None:
        line += (f" | slot start p50 {percentile(delays, 0.5):4.0f} ms, p99 {percentile(delays, 0.99):4.0f} ms, "
                 f"max {max(delays, default=float('nan')):4.0f} ms over {len(delays)}")
    print(line, flush=True)


def attacks(port, slow_body, guessing):
    """The attack phases against one listener, by name."""
    slow_head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    sources = [f"127.0.{1 + i // 16}.{2 + i % 16}" for i in range(20)]
    method, path, headers, body = guessing
    guessers = [(guess, (port, method, path, headers, body, source)) for source in sources for _ in range(16)]
    guessers.append((guess, (port, method, path, headers, body, "127.0.0.1")))
    # Ten other hosts hold SLOW connections between them.
    holders = [f"127.0.4.{2 + i}" for i in range(10)]
    return [
        (f"slowloris {SLOW}", [(slowloris, (port, slow_head, source, SLOW // 10)) for source in holders]),
        (f"slow bodies {SLOW}", [(slowloris, (port, slow_body, source, SLOW // 10)) for source in holders]),
        ("auth guessing", guessers),
        ("held churn", [(churn, (port, f"127.0.3.{2 + i}")) for i in range(10)]),
    ]


def main():
    if "LOA_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp())
    daemons = []
    try:
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", work / "short.wav", "synth", "0.5", "sine", "440",
                        "gain", "-6"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "64", work / "short.wav", work / "short.mp3"], check=True)
        port = free_port()
        daemon, token = start_station(work / "station", port, work / "short.mp3")
        daemons.append(daemon)
        time.sleep(5)
        print(f"loa run, ulimit -n 1024, a 0.5 s bulletin every 2 s, {AIRINGS} airings a phase; "
              f"the operator queues every 500 ms", flush=True)
        queue = ("POST", "/api/v1/queue", {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                 '{"clip_id": 1, "when": "next_slot"}', {202})
        pairing = b"POST /api/v1/pair HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        wrong = ("GET", "/api/v1/station", {"Authorization": "Bearer loa_" + "0" * 64}, None)
        phase("idle", port, queue, "/healthz", [], work / "station")
        for name, attackers in attacks(port, pairing, wrong):
            phase(name, port, queue, "/healthz", attackers, work / "station")

        port = free_port()
        daemon, clerk = start_office(work / "office", port)
        daemons.append(daemon)
        time.sleep(3)
        print(f"loa district serve, ulimit -n 1024, {PHASE_SECONDS} s a phase; the clerk opens the dashboard "
              f"every 500 ms", flush=True)
        dashboard = ("GET", "/", {"Cookie": f"loa_clerk={clerk}"}, None, {200})
        sign_in = b"POST /clerk HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nt"
        wrong_push = ("POST", "/api/v1/push", {"Authorization": "Bearer loa_" + "0" * 64}, "{}\n")
        phase("idle", port, dashboard, "/api/v1/status", [])
        for name, attackers in attacks(port, sign_in, wrong_push):
            phase(name, port, dashboard, "/api/v1/status", attackers)
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
