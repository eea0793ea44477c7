#!/usr/bin/env python3
"""How long `leadstream serve` takes to answer, and how big the binary is: two builds
side by side in one run, alternating, so the machine's noise falls on both alike.

Start-up is measured from spawning `serve` on a fresh data dir (embedded default store,
a port picked by the OS) to the first 200 of GET /readyz, polled every millisecond.
The size is the file as built and with its symbols stripped (`strip` on a copy).

    python3 benches/serve_startup.py --before OLD_BINARY --after target/release/leadstream

Prints a Markdown table for docs/benchmarks.md: the median and p90 of each build and
the after/before ratio of the medians; `--json FILE` also writes them for
docs/plot_summaries.py (docs/img/serve-startup.svg).
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=0.2)
        c.request("GET", "/readyz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def start_once(binary):
    """Seconds from spawn to the first 200 of /readyz."""
    data = tempfile.mkdtemp(prefix="leadstream-startup-")
    port = free_port()
    began = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not ready(port):
            if proc.poll() is not None:
                raise SystemExit(f"{binary} serve exited with {proc.returncode} before it was ready")
            if time.perf_counter() - began > 30:
                raise SystemExit(f"{binary} serve was not ready within 30 s")
            time.sleep(0.001)
        return time.perf_counter() - began
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def sizes(binary):
    built = os.path.getsize(binary)
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "leadstream")
        shutil.copy(binary, copy)
        subprocess.run(["strip", copy], check=True)
        return built, os.path.getsize(copy)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the baseline leadstream binary")
    p.add_argument("--after", required=True, help="the leadstream binary to compare")
    p.add_argument("--runs", type=int, default=30, help="starts of each binary (default 30)")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    a = p.parse_args()
    times = {"before": [], "after": []}
    for _ in range(a.runs):
        for name in ("before", "after"):
            times[name].append(start_once(getattr(a, name)))
    rows = []
    for name in ("before", "after"):
        t = sorted(times[name])
        built, stripped = sizes(getattr(a, name))
        rows.append((name, statistics.median(t), t[int(len(t) * 0.9) - 1], built, stripped))
    mib = 1024 * 1024
    print(f"| build | start-up to /readyz, median | p90 | binary | stripped |")
    print("| --- | --- | --- | --- | --- |")
    for name, med, p90, built, stripped in rows:
        print(f"| {name} | {med * 1000:.1f} ms | {p90 * 1000:.1f} ms | {built / mib:.2f} MiB | {stripped / mib:.2f} MiB |")
    (_, m0, _, b0, s0), (_, m1, _, b1, s1) = rows
    print(f"| after / before | {m1 / m0:.2f}× | | {b1 / b0:.3f}× (+{(b1 - b0) / 1024:.0f} KiB) | {s1 / s0:.3f}× (+{(s1 - s0) / 1024:.0f} KiB) |")
    print(f"\n{a.runs} starts of each, alternating.")
    if a.json:
        summary = {"kind": "serve_startup", "runs": a.runs}
        for name, med, p90, built, stripped in rows:
            summary[name] = {"median_ms": med * 1000, "p90_ms": p90 * 1000, "bytes": built, "stripped_bytes": stripped}
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
