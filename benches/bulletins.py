#!/usr/bin/env python3
"""Emergency fan-out benchmark (issues 25 and 33): from `loa district bulletin add --priority
emergency` to the first frame the device took, at STATIONS (default 10) real `loa run` stations
following a real `loa district serve` on loopback, each on its own real-time-paced ALSA file
device. Every station reaches the office through a small HTTP proxy (this script's), which can
hold each feed answer back. ROUNDS (default 5) bulletins per case; the latency of each station in
each round is `started_at` of its first `airing_ended` after the send (the first frame, from
the proof log) minus the instant the command was started. The cases, in one run:

- quiet: nothing else happening (the peer the others are judged against);
- (b) slow proxy: every feed answer held back 1 s on the way;
- (c) office restarted: `loa district serve` stopped and started again just before the send
  (the stations' long-polls were cut);
- (a) busy (last: its long clips stay owed): each station is airing a 5-minute
  emergency-priority clip of its own when the new one is sent (it must pre-empt it).

Prints p50/p99/max of each and its p99 as a ratio of the quiet run's. Goal: p99 <= 2 s in every
case. Needs pv, sox and lame, and a release build (`cargo build --release`).
"""
import http.server
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
STATIONS = int(os.environ.get("STATIONS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
CLIP = ROOT / "tests" / "fixtures" / "cbr128_stereo_44k.mp3"


def run(*args, env=None):
    done = subprocess.run([str(LOA), *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"loa {' '.join(args)}: {done.stderr}")
    return done.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, seconds=60):
    deadline = time.time() + seconds
    while not check():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def long_clip(work, n):
    """A 5-minute MP3 of its own (a different tone each time: a different bulletin's audio)."""
    wav, mp3 = work / f"long-{n}.wav", work / f"long-{n}.mp3"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(wav), "synth", "300", "sine", str(300 + 10 * n),
                    "vol", "0.3"], check=True)
    subprocess.run(["lame", "--quiet", "-b", "64", str(wav), str(mp3)], check=True)
    return mp3


class Proxy:
    """Forwards every request to the office; holds each feed answer back `delay` seconds."""

    def __init__(self, office_port):
        self.delay, self.port, office = 0.0, free_port(), f"http://127.0.0.1:{office_port}"
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0)) or None
                request = urllib.request.Request(office + self.path, data=body, method=self.command)
                for name in ["authorization", "content-type", "range", "loa-head-statement", "loa-office-head",
                             "loa-receipt"]:
                    if self.headers.get(name) is not None:
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        status, headers, data = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as refused:
                    status, headers, data = refused.code, refused.headers, refused.read()
                except OSError:
                    self.send_error(502)
                    return
                if self.path.startswith("/api/v1/bulletins?"):
                    time.sleep(proxy.delay)
                self.send_response(status)
                for name in ["content-type", "content-range", "loa-head"]:
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def first_frame_after(dir, sent_at):
    lines = run("--config", str(dir / "station.toml"), "airtime", "--format", "jsonl").splitlines()
    ended = [json.loads(l) for l in lines if '"airing_ended"' in l]
    starts = [e["started_at"] for e in ended if (e.get("started_at") or 0) > sent_at]
    return min(starts) if starts else None


def on_air_since(dir, since):
    lines = run("--config", str(dir / "station.toml"), "airtime", "--format", "jsonl").splitlines()
    return any('"airing_started"' in l and json.loads(l)["at"] > since for l in lines)


class Bench:
    def __init__(self, work):
        self.work, self.stations, self.processes = work, [], []
        self.office_dir, self.port = work / "office", free_port()
        self.office_dir.mkdir()
        self.district = self.office_dir / "district.toml"
        self.office = None
        self.sent = 0

    def set_up(self):
        for i in range(STATIONS):
            dir = self.work / f"station-{i}"
            dir.mkdir()
            (dir / "station.toml").write_text(
                f'[station]\nid = "dai-{i}"\nname = "Đài {i}"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n'
                '[[slot]]\nname = "sang"\ncron = "0 30 5 * * Mon-Sun"\nmax_minutes = 15\npeak = true\n')
            (dir / "asound.conf").write_text(
                'pcm.!default { type plug; slave { pcm "air"; format S16_LE; rate 48000; channels 2 } }\n'
                f'pcm.air {{ type file; slave {{ pcm {{ type null }} }}; file "|pv -q -L {48000 * 4} > /dev/null"; '
                'format "raw" }\n')
            key = json.loads(run("--config", str(dir / "station.toml"), "station", "--json"))["public_key"]
            self.stations.append((dir, f"dai-{i}", key))
        entries = "".join(f'[[station]]\nid = "{id}"\nname = "{id}"\npublic_key = "{key}"\n'
                          for _, id, key in self.stations)
        self.district.write_text(f'[district]\nname = "UBND xã Thử"\ndata_dir = "data"\n'
                                 f'listen = "127.0.0.1:{self.port}"\n' + entries)
        office_key = json.loads(run("district", "--config", str(self.district), "status", "--json"))["office_key"]
        self.start_office()
        self.proxy = Proxy(self.port)
        for dir, id, _ in self.stations:
            token = run("district", "--config", str(self.district), "token", "create", "--station", id).strip()
            config = dir / "station.toml"
            config.write_text(config.read_text() + f'[upstream]\nurl = "http://127.0.0.1:{self.proxy.port}"\n'
                              f'token = "{token}"\n[office]\npublic_key = "{office_key}"\n')
            env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "asound.conf"), LOA_LOG="warn")
            self.processes.append(subprocess.Popen([str(LOA), "--config", str(config), "run"], cwd=dir, env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3)  # every station up and long-polling

    def start_office(self):
        self.office = subprocess.Popen([str(LOA), "district", "--config", str(self.district), "serve"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until("the office", lambda: socket.socket().connect_ex(("127.0.0.1", self.port)) == 0)

    def send(self, clip, title):
        self.sent += 1
        run("district", "--config", str(self.district), "bulletin", "add", str(clip), "--title", title,
            "--topic", "cchc", "--priority", "emergency")

    def measure(self, before=None):
        latencies = []
        for round in range(ROUNDS):
            if before:
                before(round)
            sent_at = time.time() * 1000
            self.send(CLIP, f"Khẩn {self.sent}")
            for dir, _, _ in self.stations:
                wait_until(f"round {round} at {dir.name}", lambda: first_frame_after(dir, sent_at) is not None)
                latencies.append(first_frame_after(dir, sent_at) - sent_at)
            time.sleep(1)  # the short clip ends everywhere
        return latencies

    def busy(self, round):
        since = time.time() * 1000
        self.send(long_clip(self.work, round), f"Khẩn dài {round}")
        for dir, _, _ in self.stations:
            wait_until(f"the long clip on air at {dir.name}", lambda: on_air_since(dir, since))

    def restart_office(self, _round):
        self.office.terminate()
        self.office.wait(timeout=20)
        self.start_office()

    def tear_down(self):
        for process in self.processes + [self.office]:
            process.terminate()
        for process in self.processes + [self.office]:
            process.wait(timeout=20)


def figures(latencies):
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99, latencies[-1]


def main():
    bench = Bench(Path(tempfile.mkdtemp(prefix="loa-fanout-")))
    try:
        bench.set_up()
        results = [("quiet (peer)", bench.measure())]
        bench.proxy.delay = 1.0
        results.append(("(b) every feed answer held back 1 s", bench.measure()))
        bench.proxy.delay = 0.0
        results.append(("(c) right after an office restart", bench.measure(bench.restart_office)))
        # Last: the long clips it sends stay owed (pre-empted, aired again) long after.
        results.append(("(a) each station airing a 5-min emergency clip", bench.measure(bench.busy)))
    finally:
        bench.tear_down()
    quiet_p99 = figures(results[0][1])[1]
    print(f"emergency fan-out, {STATIONS} stations x {ROUNDS} bulletins per case: add -> first frame "
          "(goal p99 <= 2000 ms in every case)")
    for label, latencies in results:
        p50, p99, worst = figures(latencies)
        print(f"  {label:50} p50 {p50:5.0f} ms  p99 {p99:5.0f} ms  max {worst:5.0f} ms  "
              f"p99 {p99 / quiet_p99:4.2f}x quiet")


if __name__ == "__main__":
    main()
