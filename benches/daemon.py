#!/usr/bin/env python3
"""Daemon benchmark: one run, figures printed together.

- idle RSS and CPU of `loa run` over IDLE_SECONDS (default 60) waiting for a far slot, and the
  same for Liquidsoap on an equivalent script (a `switch` on a future time window with `mksafe`,
  `output.dummy`), measured at the same time, when liquidsoap is installed;
- RSS while playing, and slot start latency (scheduled instant -> first frame pulled by the
  device, from the proof log) p50/p99 over AIRINGS (default 60) airings on the real-time-paced
  ALSA file device (`pv -L`).

Goals (broadcast-engine issue): idle <= 8 MiB RSS and <= 0.1 % CPU; playing <= 16 MiB;
start p99 <= 20 ms. Needs sox, lame, pv; liquidsoap optional.
"""
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
IDLE_SECONDS = int(os.environ.get("IDLE_SECONDS", "60"))
AIRINGS = int(os.environ.get("AIRINGS", "60"))
TICKS = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0  # it ended meanwhile
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid):
    """Proportional set size: shared pages (the one binary both processes map, libc) split
    between the processes that map them, so a sum over processes counts each page once."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children(pid):
    """The daemon's child processes (the audio device's process, `loa audio-worker`, while a slot runs)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(c) for c in found.split()]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_figures(pid, seconds, out, name):
    start = cpu_seconds(pid)
    time.sleep(seconds)
    out[name] = (rss_kib(pid) / 1024, (cpu_seconds(pid) - start) / seconds * 100)


def station(dir, cron, preload=None, paced=False, min_seconds=1):
    dir.mkdir(parents=True)
    config = f'[station]\nid = "bench"\nname = "bench"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n[clips]\nmin_seconds = {min_seconds}\n' \
             f'[[slot]]\nname = "bench"\ncron = "{cron}"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n'
    if preload:
        config += f'[[preload]]\nfile = "{preload}"\ntitle = "bench"\ntopic = "cchc"\n'
    (dir / "station.toml").write_text(config)
    # Paced: `plug` to 48 kHz stereo 16-bit, written through pv at that byte rate (real time
    # whatever the clip's format); unpaced: the file at the clip's own format.
    target = f"|pv -q -L {48000 * 2 * 2} > {dir}/air.raw" if paced else f"{dir}/air.raw"
    file = f'{{ type file; slave {{ pcm {{ type null }} }}; file "{target}"; format "raw" }}\n'
    plug = 'pcm.!default { type plug; slave { pcm "air"; format S16_LE; rate 48000; channels 2 } }\n'
    (dir / "alsa.conf").write_text(f"pcm.air {file}{plug}" if paced else f"pcm.!default {file}")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(dir / "alsa.conf"), LOA_LOG="warn")
    return subprocess.Popen([LOA, "--config", dir / "station.toml", "run"], env=env,
                            stderr=open(dir / "log", "w"))


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp())
    procs = []
    try:
        # --- idle: loa waiting for a slot at midnight on 1 January, Liquidsoap beside it ---
        procs.append(station(work / "idle", "0 0 0 1 1 *"))
        figures = {}
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", work / "tone.wav", "synth", "2", "sine", "440", "gain", "-6"], check=True)
        liquidsoap = shutil.which("liquidsoap")
        if liquidsoap:
            window = (time.localtime().tm_hour + 12) % 24  # a minute half a day away
            (work / "idle.liq").write_text(
                "settings.init.allow_root.set(true)\n"
                "settings.log.stdout.set(false)\nsettings.log.file.set(false)\n"
                f'bulletin = single("{work}/tone.wav")\n'
                f"radio = switch([({{ {window}h-{window}h1m }}, bulletin)])\n"
                "output.dummy(mksafe(radio))\n")
            procs.append(subprocess.Popen([liquidsoap, work / "idle.liq"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(5)  # settle: runtime up, store open, first heartbeat written
        threads = [threading.Thread(target=idle_figures, args=(procs[0].pid, IDLE_SECONDS, figures, "loa"))]
        if liquidsoap:
            threads.append(threading.Thread(target=idle_figures, args=(procs[1].pid, IDLE_SECONDS, figures, "liquidsoap")))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in procs:
            p.terminate()
            p.wait()
        procs.clear()
        print(f"idle over {IDLE_SECONDS} s:")
        for name, (rss, cpu) in figures.items():
            print(f"  {name:<11} RSS {rss:6.1f} MiB   CPU {cpu:.3f} % of a core")
        if not liquidsoap:
            print("  liquidsoap not installed: peer not measured")

        # --- playing: a 0.5 s bulletin every two seconds on the paced device ---
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", work / "short.wav", "synth", "0.5", "sine", "440", "gain", "-6"], check=True)
        subprocess.run(["lame", "--quiet", "-b", "64", work / "short.wav", work / "short.mp3"], check=True)
        daemon = station(work / "play", "*/2 * * * * *", preload=work / "short.mp3", paced=True, min_seconds=0.1)
        procs.append(daemon)
        # The station and the device's process it starts per slot, each at its peak, and their
        # sum at its peak (RSS counts the binary's shared pages in each).
        peak_rss, peak_worker, peak_sum, peak_pss = 0.0, 0.0, 0.0, 0.0
        deadline = time.time() + AIRINGS * 2.5 + 30
        while time.time() < deadline:
            time.sleep(0.1)
            station_rss = rss_kib(daemon.pid) / 1024
            workers = children(daemon.pid)
            worker_rss = sum(rss_kib(c) for c in workers) / 1024
            peak_rss, peak_worker = max(peak_rss, station_rss), max(peak_worker, worker_rss)
            peak_sum = max(peak_sum, station_rss + worker_rss)
            peak_pss = max(peak_pss, (pss_kib(daemon.pid) + sum(pss_kib(c) for c in workers)) / 1024)
            log = subprocess.run([LOA, "--config", work / "play" / "station.toml", "airtime", "--format", "jsonl"],
                                 capture_output=True, text=True).stdout
            ended = [e for e in map(json.loads, log.splitlines()) if e["kind"] == "airing_ended"]
            if len(ended) >= AIRINGS + 1:
                break
        daemon.terminate()
        daemon.wait()
        procs.clear()
        completed = [e for e in ended if e["status"] == "completed"][1:]  # the first may follow start-up
        latencies = sorted(e["started_at"] - e["scheduled_at"] for e in completed)
        print(f"playing: peak RSS station {peak_rss:.1f} MiB, device process {peak_worker:.1f} MiB, "
              f"both {peak_sum:.1f} MiB (their PSS, shared pages counted once: {peak_pss:.1f} MiB)")
        print(f"slot start latency over {len(latencies)} airings (scheduled -> first frame pulled): "
              f"p50 {statistics.median(latencies):.0f} ms, p99 {latencies[max(0, round(len(latencies) * 0.99) - 1)]:.0f} ms, "
              f"max {latencies[-1]} ms")
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
