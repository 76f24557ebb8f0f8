#!/usr/bin/env python3
"""Airing and health under attack from the LAN: one run, figures printed together.

`loa run` (release, `ulimit -n 1024` as systemd's default) airs a 0.5 s bulletin every two
seconds on the real-time-paced ALSA file device while `/healthz` is polled every 200 ms, in
three phases of AIRINGS airings each (default 20):

- idle: nothing else;
- slowloris: SLOW (default 1000) connections from this host that send half a request head and
  keep it alive with a byte a second;
- schedule load: 4 clients looping `GET /api/v1/schedule?days=7` with a district token.

For each: slot start delay (scheduled instant -> first frame pulled, from the proof log) p50 /
p99 / max, and `/healthz` latency p50 / p99 / max with the number of failed polls.
Needs sox, lame, pv. Run: `python3 benches/attack.py`.
"""
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# LOA_BIN: another build to measure the same way (e.g. an older commit's, for a before/after).
LOA = Path(os.environ.get("LOA_BIN", ROOT / "target" / "release" / "loa"))
AIRINGS = int(os.environ.get("AIRINGS", "20"))
SLOW = int(os.environ.get("SLOW", "1000"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    values = sorted(values)
    return values[max(0, round(len(values) * p) - 1)] if values else float("nan")


def start_station(dir, port, clip):
    dir.mkdir(parents=True)
    (dir / "station.toml").write_text(
        f'[station]\nid = "bench"\nname = "bench"\ndata_dir = "data"\n[clips]\nmin_seconds = 0.1\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[[slot]]\nname = "bench"\ncron = "*/2 * * * * *"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n'
        f'[[preload]]\nfile = "{clip}"\ntitle = "bench"\ntopic = "cchc"\n')
    file = f'{{ type file; slave {{ pcm {{ type null }} }}; file "|pv -q -L {48000 * 4} > {dir}/air.raw"; format "raw" }}\n'
    plug = 'pcm.!default { type plug; slave { pcm "air"; format S16_LE; rate 48000; channels 2 } }\n'
    (dir / "alsa.conf").write_text(f"pcm.air {file}{plug}")
    token = subprocess.run([LOA, "--config", dir / "station.toml", "token", "create", "--role", "district",
                            "--label", "bench"], capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "alsa.conf"), LOA_LOG="warn")
    limit = lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_NOFILE, (1024, 1024))
    daemon = subprocess.Popen([LOA, "--config", dir / "station.toml", "run"], env=env, preexec_fn=limit,
                              stderr=open(dir / "log", "w"))
    return daemon, token


def airings(dir):
    log = subprocess.run([LOA, "--config", dir / "station.toml", "airtime", "--format", "jsonl"],
                         capture_output=True, text=True).stdout
    return [e for e in map(json.loads, log.splitlines()) if e["kind"] == "airing_ended"]


def poll_health(port, stop, latencies, failures):
    while not stop.is_set():
        started = time.monotonic()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/healthz")
            ok = connection.getresponse().status == 200
            connection.close()
        except OSError:
            ok = False
        if ok:
            latencies.append((time.monotonic() - started) * 1000)
        else:
            failures.append(1)
        time.sleep(0.2)


def slowloris(port, stop):
    held = []
    while not stop.is_set():
        while len(held) < SLOW and not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: station\r\nX-Slow: ")
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
        time.sleep(1)
    for s in held:
        s.close()


def schedule_load(port, token, stop):
    while not stop.is_set():
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/api/v1/schedule?days=7", headers={"Authorization": f"Bearer {token}"})
            connection.getresponse().read()
            connection.close()
        except OSError:
            time.sleep(0.1)


def phase(name, dir, port, attackers):
    stop = threading.Event()
    latencies, failures = [], []
    threads = [threading.Thread(target=poll_health, args=(port, stop, latencies, failures))]
    threads += [threading.Thread(target=target, args=args + (stop,)) for target, args in attackers]
    began = int(time.time() * 1000)
    for t in threads:
        t.start()
    deadline = time.time() + AIRINGS * 2.5 + 60
    while time.time() < deadline:
        time.sleep(1)
        during = [e for e in airings(dir) if e["scheduled_at"] > began + 2000]
        if len(during) >= AIRINGS:
            break
    stop.set()
    for t in threads:
        t.join()
    delays = [e["started_at"] - e["scheduled_at"] for e in during if e["status"] == "completed"]
    print(f"{name:<14} slot start delay over {len(delays):2} of {len(during)} airings: "
          f"p50 {percentile(delays, 0.5):4.0f} ms, p99 {percentile(delays, 0.99):4.0f} ms, max {max(delays, default=float('nan')):4.0f} ms | "
          f"/healthz p50 {percentile(latencies, 0.5):5.1f} ms, p99 {percentile(latencies, 0.99):6.1f} ms, "
          f"max {max(latencies, default=float('nan')):6.1f} ms, {len(failures)} failed of {len(latencies) + len(failures)}")


def main():
    if "LOA_BIN" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp())
    daemon = None
    try:
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", work / "short.wav", "synth", "0.5", "sine", "440", "gain", "-6"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "64", work / "short.wav", work / "short.mp3"], check=True)
        port = free_port()
        daemon, token = start_station(work / "station", port, work / "short.mp3")
        time.sleep(5)
        print(f"loa run, ulimit -n 1024, a 0.5 s bulletin every 2 s, {AIRINGS} airings a phase")
        phase("idle", work / "station", port, [])
        phase(f"slowloris {SLOW}", work / "station", port, [(slowloris, (port,))])
        phase("schedule x4", work / "station", port, [(schedule_load, (port, token))] * 4)
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
