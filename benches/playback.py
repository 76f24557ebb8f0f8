#!/usr/bin/env python3
"""Playback cost, side by side in one run: `loa run` airing a bulletin vs `mpg123 -o alsa`
playing the same file on the same pv-paced ALSA device (the `file` plugin at the clip's own
rate, 16-bit, written through `pv -L` at that byte rate: real time).

For each of a 60 s 44.1 kHz stereo 128 kbps bulletin and a 60 s 22.05 kHz mono 32 kbps one:
whole-process CPU seconds over the airing and peak RSS while playing, ours and mpg123's, and
the ratios. Goals (issue 12): CPU <= 1.5x mpg123; peak RSS while playing <= 12 MiB.
Needs sox, lame, pv, mpg123. `SECONDS_OF_AUDIO` (default 60) shortens it for a quick look.
"""
import json
import os
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
SECONDS_OF_AUDIO = int(os.environ.get("SECONDS_OF_AUDIO", "60"))
TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def paced_device(dir, rate, channels):
    conf = dir / "alsa.conf"
    conf.write_text(
        f'pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; '
        f'file "|pv -q -L {rate * channels * 2} > {dir}/air.raw"; format "raw" }}\n')
    return dict(os.environ, ALSA_CONFIG_PATH=str(conf))


def peak_rss_while(pid, running, out):
    peak = 0
    while running.is_set():
        try:
            peak = max(peak, status_kib(pid, "VmRSS"))
        except FileNotFoundError:
            break
        time.sleep(0.05)
    out.append(peak)


def bench_mpg123(dir, mp3, rate, channels):
    env = paced_device(dir, rate, channels)
    start = time.monotonic()
    proc = subprocess.Popen(["mpg123", "-q", "-o", "alsa", str(mp3)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0, f"mpg123 exited {status}"
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, time.monotonic() - start


def bench_loa(dir, mp3, rate, channels):
    (dir / "station.toml").write_text(
        '[station]\nid = "bench"\nname = "bench"\ndata_dir = "data"\n[http]\nlisten = "127.0.0.1:0"\n'
        '[clips]\nmax_seconds = 120\n'
        f'[[slot]]\nname = "bench"\ncron = "0 * * * * Mon-Sun"\nmax_minutes = 2\npeak = true\ngrace_seconds = 1\n')
    run = lambda *args: subprocess.run([LOA, "--config", dir / "station.toml", *args], check=True,
                                       capture_output=True, text=True)
    run("clip", "add", str(mp3), "--title", "bench", "--topic", "cchc")
    env = dict(paced_device(dir, rate, channels), LOA_LOG="warn")
    # Start so that the next whole minute is at least 10 s away (start-up settles first).
    while datetime.now(timezone.utc).second > 45:
        time.sleep(1)
    proc = subprocess.Popen([LOA, "--config", dir / "station.toml", "run"], env=env,
                            stderr=open(dir / "log", "w"))
    try:
        now = datetime.now(timezone.utc)
        slot = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        time.sleep(max(0.0, (slot - datetime.now(timezone.utc)).total_seconds() - 3))
        cpu_before = cpu_seconds(proc.pid)
        running, peak = threading.Event(), []
        running.set()
        sampler = threading.Thread(target=peak_rss_while, args=(proc.pid, running, peak))
        sampler.start()
        while True:
            events = [json.loads(l) for l in run("airtime", "--format", "jsonl").stdout.splitlines()]
            ended = [e for e in events if e["kind"] == "airing_ended"]
            if ended:
                break
            time.sleep(0.5)
        cpu = cpu_seconds(proc.pid) - cpu_before
        running.clear()
        sampler.join()
        return cpu, peak[0] / 1024, ended[0]
    finally:
        proc.terminate()
        proc.wait()


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp())
    speech = work / "speech.wav"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", speech, "synth", str(SECONDS_OF_AUDIO), "pinknoise",
                    "tremolo", "4", "80", "gain", "-14"], check=True)
    cases = [("44.1 kHz stereo 128 kbps", 44100, 2, ["-b", "128"]),
             ("22.05 kHz mono 32 kbps", 22050, 1, ["-b", "32", "-m", "m", "--resample", "22.05"])]
    print(f"{SECONDS_OF_AUDIO} s bulletins on a pv-paced ALSA file device (16-bit at the clip's rate)")
    for name, rate, channels, lame in cases:
        mp3 = work / f"{rate}.mp3"
        subprocess.run(["lame", "--quiet", *lame, speech, mp3], check=True)
        ours_dir, theirs_dir = work / f"loa-{rate}", work / f"mpg123-{rate}"
        ours_dir.mkdir()
        theirs_dir.mkdir()
        cpu, rss, ended = bench_loa(ours_dir, mp3, rate, channels)
        m_cpu, m_rss, m_wall = bench_mpg123(theirs_dir, mp3, rate, channels)
        print(f"\n{name}: loa airing {ended['status']}, {ended['played_ms']} ms played; mpg123 {m_wall:.1f} s")
        print(f"  CPU seconds      loa {cpu:6.3f}   mpg123 {m_cpu:6.3f}   ratio {cpu / m_cpu:5.2f}x (goal <= 1.5x)")
        print(f"  peak RSS (MiB)   loa {rss:6.1f}   mpg123 {m_rss:6.1f}   ratio {rss / m_rss:5.2f}x (goal loa <= 12)")


if __name__ == "__main__":
    main()
