#!/usr/bin/env python3
"""What the station writes to its SD card: one run, figures printed together.

- idle: `loa run` waiting for a far slot for IDLE_SECONDS (default 300); bytes it wrote (from
  /proc/PID/io: `write_bytes`, what reached the block layer, and `wchar`, what it handed to
  write calls, WAL and checkpoints included), extrapolated to a day, and the data directory's
  growth; journal lines it logged;
- per airing: AIRINGS (default 6) airings of a 10 s bulletin on the real-time-paced ALSA file
  device, the station's bytes written per airing and its log lines per airing. (The device's
  own process writes only to the device; it is not counted.)

Goal (issue 26): idle <= 5 MB a day, SQLite's WAL and checkpoints included; a few log lines
per airing. Needs sox, lame, pv.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "300"))
AIRINGS = int(os.environ.get("AIRINGS", "6"))
DAY = 86_400


def io(pid):
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["write_bytes"]), int(fields["wchar"])


def dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def station(dir, cron, preload=None):
    dir.mkdir(parents=True)
    config = f'[station]\nid = "wear"\nname = "wear"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n' \
             f'[[slot]]\nname = "wear"\ncron = "{cron}"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n'
    if preload:
        config += f'[[preload]]\nfile = "{preload}"\ntitle = "wear"\ntopic = "cchc"\n'
    (dir / "station.toml").write_text(config)
    target = f"|pv -q -L {44100 * 2} > /dev/null"
    (dir / "alsa.conf").write_text(f'pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; file "{target}"; format "raw" }}\n')
    env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "alsa.conf"))  # the default log level
    return subprocess.Popen([LOA, "--config", dir / "station.toml", "run"], env=env, stderr=open(dir / "log", "w"))


def log_lines(dir):
    return len((dir / "log").read_text().splitlines())


def events(dir):
    out = subprocess.run([LOA, "--config", dir / "station.toml", "airtime", "--format", "jsonl"],
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp())
    try:
        # --- idle ---
        daemon = station(work / "idle", "0 0 0 1 1 *")
        time.sleep(5)  # settle: store open, start-up written
        (disk0, handed0), size0, lines0 = io(daemon.pid), dir_bytes(work / "idle" / "data"), log_lines(work / "idle")
        time.sleep(IDLE_SECONDS)
        (disk1, handed1), size1, lines1 = io(daemon.pid), dir_bytes(work / "idle" / "data"), log_lines(work / "idle")
        daemon.terminate()
        daemon.wait()
        scale = DAY / IDLE_SECONDS
        print(f"idle over {IDLE_SECONDS} s, per day: written to disk {(disk1 - disk0) * scale / 1e6:.2f} MB, "
              f"handed to write() {(handed1 - handed0) * scale / 1e6:.2f} MB, data directory grew "
              f"{(size1 - size0) * scale / 1e6:.2f} MB, {(lines1 - lines0) * scale:.0f} log lines (goal <= 5 MB)")

        # --- per airing: a 10 s bulletin every 20 s on the paced device ---
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", work / "ten.wav", "synth", "10", "sine", "440", "gain", "-6"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "64", work / "ten.wav", work / "ten.mp3"], check=True)
        dir = work / "air"
        daemon = station(dir, "*/20 * * * * *", preload=work / "ten.mp3")
        deadline = time.time() + 60
        while time.time() < deadline and not events(dir):
            time.sleep(0.5)
        time.sleep(2)
        first = len([e for e in events(dir) if e["kind"] == "airing_ended"])
        (disk0, handed0), lines0 = io(daemon.pid), log_lines(dir)
        deadline = time.time() + AIRINGS * 20 + 60
        while time.time() < deadline:
            time.sleep(1)
            if len([e for e in events(dir) if e["kind"] == "airing_ended"]) >= first + AIRINGS:
                break
        (disk1, handed1), lines1 = io(daemon.pid), log_lines(dir)
        aired = len([e for e in events(dir) if e["kind"] == "airing_ended"]) - first
        daemon.terminate()
        daemon.wait()
        print(f"per airing of a 10 s bulletin ({aired} airings): written to disk {(disk1 - disk0) / aired / 1e3:.1f} kB, "
              f"handed to write() {(handed1 - handed0) / aired / 1e3:.1f} kB, {(lines1 - lines0) / aired:.1f} log lines")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
