#!/usr/bin/env python3
"""The office holding STATIONS (default 1000) stations long-polling its bulletins' feed
(simulated clients: one HTTP/1.1 connection each, with its own push token, on loopback), then a
bulletin sent with `loa district bulletin add`: the time until every station has it (goal
<= 2 s), the office's RSS (goal <= 64 MiB) and CPU while they all wait, and its RSS while
SERVE_STATIONS (default 1000) stations download one 10 MB bulletin's audio at once (streamed
from disk: flat). Needs a release build (`cargo build --release`), ffmpeg (to make the 10 MB
file) and the tests' Python venv (`.ci/setup test`: `cryptography`, for the stations' keys).
"""
import asyncio
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
LOA = ROOT / "target" / "release" / "loa"
STATIONS = int(os.environ.get("STATIONS", "1000"))
SERVE_STATIONS = int(os.environ.get("SERVE_STATIONS", "1000"))
TICKS = os.sysconf("SC_CLK_TCK")


def loa(*args):
    done = subprocess.run([str(LOA), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"loa {' '.join(args)}: {done.stderr}")
    return done.stdout


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def public_hex():
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


async def request(port, path, token, read_body=True):
    """One GET; returns the status line's code and the body length."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: office\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read() if read_body else b""
    writer.close()
    return data.split(b" ", 2)[1].decode() if data else "", len(data)


async def long_polls(port, tokens, district, pid):
    started = [asyncio.create_task(request(port, "/api/v1/bulletins?after=0&wait=60", t)) for t in tokens]
    await asyncio.sleep(5)  # every one connected and waiting
    cpu, at = cpu_seconds(pid), time.time()
    await asyncio.sleep(5)
    idle_cpu = (cpu_seconds(pid) - cpu) / (time.time() - at) * 100
    waiting_rss = rss_mib(pid)
    sent = time.time()
    add = await asyncio.create_subprocess_exec(
        str(LOA), "district", "--config", str(district), "bulletin", "add", str(ROOT / "tests/fixtures/cbr128_stereo_44k.mp3"),
        "--title", "Khẩn", "--topic", "cchc", "--priority", "emergency", stdout=subprocess.DEVNULL)
    await add.wait()
    added = time.time()
    answers = await asyncio.gather(*started)
    delivered = time.time()
    ok = sum(1 for code, _ in answers if code == "200")
    return ok, waiting_rss, idle_cpu, added - sent, delivered - sent


async def downloads(port, tokens, pid, id):
    peak = [0.0]

    async def sample():
        while True:
            peak[0] = max(peak[0], rss_mib(pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    answers = await asyncio.gather(*(request(port, f"/api/v1/bulletins/{id}/audio", t) for t in tokens))
    sampler.cancel()
    return sum(1 for code, _ in answers if code == "200"), peak[0]


def main():
    work = Path(tempfile.mkdtemp(prefix="loa-office-feed-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    district = work / "district.toml"
    entries = "".join(f'[[station]]\nid = "dai-{i}"\nname = "Đài {i}"\npublic_key = "{public_hex()}"\n'
                      for i in range(max(STATIONS, SERVE_STATIONS)))
    district.write_text(f'[district]\nname = "UBND tỉnh Thử"\ndata_dir = "data"\nlisten = "127.0.0.1:{port}"\n{entries}')
    tokens = [loa("district", "--config", str(district), "token", "create", "--station", f"dai-{i}").strip()
              for i in range(max(STATIONS, SERVE_STATIONS))]
    big = work / "ten-mb.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=625",
                    "-ac", "2", "-b:a", "128k", str(big)], check=True)
    office = subprocess.Popen([str(LOA), "district", "--config", str(district), "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
        time.sleep(1)
        idle_rss = rss_mib(office.pid)
        ok, waiting_rss, idle_cpu, add_s, delivered_s = asyncio.run(
            long_polls(port, tokens[:STATIONS], district, office.pid))
        print(f"office feed, {STATIONS} stations long-polling: {ok} answered; delivery {delivered_s:.2f} s after "
              f"`bulletin add` started (the command itself {add_s:.2f} s; goal <= 2 s); RSS idle {idle_rss:.1f} MiB, "
              f"with every station waiting {waiting_rss:.1f} MiB (goal <= 64); CPU while they wait {idle_cpu:.2f} %")
        id = int(loa("district", "--config", str(district), "bulletin", "add", str(big), "--title", "Chuyên mục",
                     "--topic", "cchc", "--json").split('"id":')[1].split(",")[0])
        before = rss_mib(office.pid)
        ok, peak = asyncio.run(downloads(port, tokens[:SERVE_STATIONS], office.pid, id))
        size = big.stat().st_size / 1e6
        print(f"serving one {size:.1f} MB bulletin to {SERVE_STATIONS} stations at once: {ok} whole; office RSS "
              f"{before:.1f} MiB before, peak {peak:.1f} MiB during")
    finally:
        office.terminate()
        office.wait(timeout=20)


if __name__ == "__main__":
    main()
