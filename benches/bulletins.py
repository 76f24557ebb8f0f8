#!/usr/bin/env python3
"""Emergency fan-out benchmark (issue 25): from `loa district bulletin add --priority emergency`
to the first frame the device took, at STATIONS (default 10) real `loa run` stations following a
real `loa district serve` on loopback, each on its own real-time-paced ALSA file device. ROUNDS
(default 5) bulletins, one after another; the latency of each station in each round is
`started_at` of its `airing_ended` (the first frame, from the proof log) minus the instant the
command was started. Prints p50/p99 (goal p99 <= 3 s). Needs pv and a release build
(`cargo build --release`).
"""
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
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


def main():
    work = Path(tempfile.mkdtemp(prefix="loa-fanout-"))
    office_dir, port = work / "office", free_port()
    office_dir.mkdir()
    district = office_dir / "district.toml"
    header = f'[district]\nname = "UBND xã Thử"\ndata_dir = "data"\nlisten = "127.0.0.1:{port}"\n'
    stations = []
    for i in range(STATIONS):
        dir = work / f"station-{i}"
        dir.mkdir()
        (dir / "station.toml").write_text(
            f'[station]\nid = "dai-{i}"\nname = "Đài {i}"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n'
            '[[slot]]\nname = "sang"\ncron = "0 30 5 * * Mon-Sun"\nmax_minutes = 15\npeak = true\n')
        (dir / "asound.conf").write_text(
            'pcm.!default { type plug; slave { pcm "air"; format S16_LE; rate 48000; channels 2 } }\n'
            f'pcm.air {{ type file; slave {{ pcm {{ type null }} }}; file "|pv -q -L {48000 * 4} > {dir}/air.raw"; '
            'format "raw" }\n')
        key = json.loads(run("--config", str(dir / "station.toml"), "station", "--json"))["public_key"]
        stations.append((dir, f"dai-{i}", key))
    entries = "".join(f'[[station]]\nid = "{id}"\nname = "{id}"\npublic_key = "{key}"\n' for _, id, key in stations)
    district.write_text(header + entries)
    office_key = json.loads(run("district", "--config", str(district), "status", "--json"))["office_key"]
    processes = []
    try:
        processes.append(subprocess.Popen([str(LOA), "district", "--config", str(district), "serve"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until("the office", lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        for dir, id, _ in stations:
            token = run("district", "--config", str(district), "token", "create", "--station", id).strip()
            config = dir / "station.toml"
            config.write_text(config.read_text() + f'[upstream]\nurl = "http://127.0.0.1:{port}"\ntoken = "{token}"\n'
                              f'[office]\npublic_key = "{office_key}"\n')
            env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "asound.conf"), LOA_LOG="warn")
            processes.append(subprocess.Popen([str(LOA), "--config", str(config), "run"], cwd=dir, env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3)  # every station up and long-polling
        latencies = []
        for round in range(ROUNDS):
            sent_at = time.time() * 1000
            run("district", "--config", str(district), "bulletin", "add", str(CLIP), "--title", f"Khẩn {round}",
                "--topic", "cchc", "--priority", "emergency")
            for dir, _, _ in stations:
                def first_frame():
                    lines = run("--config", str(dir / "station.toml"), "airtime", "--format", "jsonl").splitlines()
                    ended = [json.loads(l) for l in lines if '"airing_ended"' in l]
                    starts = [e["started_at"] for e in ended if (e.get("started_at") or 0) > sent_at]
                    return min(starts) if starts else None
                wait_until(f"round {round} at {dir.name}", lambda: first_frame() is not None)
                latencies.append(first_frame() - sent_at)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"emergency fan-out, {STATIONS} stations x {ROUNDS} bulletins: add -> first frame "
              f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms (goal p99 <= 3000 ms)")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
