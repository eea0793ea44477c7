#!/usr/bin/env python3
"""Draws bar charts from `leadstream bench eligibility|materialize|domain --json`:
docs/img/campaign-eligibility.svg, docs/img/campaign-materialize.svg and
docs/img/domain-webhooks.svg; from `leadstream bench ingest --database-url … --json`
(one file per batch size): docs/img/ingest-shared-registry.svg; from `bench deliver
--database-url … --json` and `bench materialize --database-url … --json`:
docs/img/deliver-shared.svg and docs/img/materialize-shared.svg; from `bench forward
--json`: docs/img/forward-latency.svg; from `benches/serve_startup.py --json`:
docs/img/serve-startup.svg.

usage: python3 docs/plot_summaries.py SUMMARY.json [SUMMARY.json ...]
(each file is recognized by its fields; only the plots of the files given are drawn)
"""
import json
import sys


def bars(path, title, rows, target, target_label, unit, fmt="{:,.0f}"):
    w, h = 720, 70 + 40 * len(rows)
    mx = max(max(v for _, v, _ in rows), target or 0) * 1.15
    x0 = 260
    span = w - x0 - 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">',
           f'<text x="10" y="22" font-size="15">{title}</text>']
    if target:
        tx = x0 + span * target / mx
        out.append(f'<line x1="{tx:.0f}" y1="32" x2="{tx:.0f}" y2="{h-10}" stroke="#c00" stroke-dasharray="4"/>'
                   f'<text x="{tx+3:.0f}" y="{h-12}" fill="#c00">{target_label}</text>')
    for i, (label, v, ours) in enumerate(rows):
        y = 40 + 40 * i
        bw = span * v / mx
        col = "#4a7bd0" if ours else "#999"
        out.append(f'<text x="10" y="{y+18}">{label}</text><rect x="{x0}" y="{y+4}" width="{bw:.0f}" height="22" fill="{col}"/>'
                   f'<text x="{x0+bw+5:.0f}" y="{y+20}">{fmt.format(v)} {unit}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out))


def eligibility(e):
    rows = [("event index, in-process", e["in_process_ms"], True)]
    if e.get("clickhouse_ms") is not None:
        rows.append(("ClickHouse path (server's query)", e["clickhouse_ms"], False))
    if e.get("sql_ms") is not None:
        rows.append(("same question, SQLite", e["sql_ms"], False))
    bars("docs/img/campaign-eligibility.svg",
         f'bench eligibility: {e["audience"]:,} leads over {e["events"]:,} events (ms, lower is better; 2 cores)',
         rows, e["target_ms"], f'target {e["target_ms"]:.0f} ms', "ms")


def materialize(m):
    bars("docs/img/campaign-materialize.svg",
         f'bench materialize: {m["audience"]:,} leads into durable deliveries (per second; 2 cores)',
         [("materialize (engine)", m["leads_per_sec"], True),
          ("bare SQLite rows, same fsync", m["baseline_rows_per_sec"], False)],
         m["target_per_sec"], f'target {m["target_per_sec"]:,.0f}/s', "/s")


def materialize_shared(m):
    sh = m["shared"]
    bars("docs/img/materialize-shared.svg",
         f'bench materialize: {m["audience"]:,} leads, embedded store vs Postgres (per second; 2 cores)',
         [("embedded store (SQLite)", m["leads_per_sec"], False),
          ("shared database (Postgres)", sh["leads_per_sec"], True)],
         100_000, "target 100,000/s (Postgres)", "/s")


def deliver(d):
    rows = [("bare client loop (ceiling)", d["baseline"]["deliveries_per_sec"], False),
            ("engine, embedded store", d["engine"]["deliveries_per_sec"], False)]
    if d.get("shared"):
        rows.append(("engine, shared database", d["shared"]["deliveries_per_sec"], True))
    bars("docs/img/deliver-shared.svg",
         f'bench deliver: {d["deliveries"]:,} deliveries to {d["endpoints"]} local endpoints (per second; 2 cores)',
         rows, 10_000, "target 10,000/s (Postgres)", "/s")


def domain(d):
    bars("docs/img/domain-webhooks.svg",
         f'bench domain: {d["events"]:,} WhatsApp webhooks, {d["concurrency"]} in flight (per second; 2 cores)',
         [("server (durable, delivered)", d["webhooks_per_sec"], True),
          ("bare peer (signature, 200)", d["bare_webhooks_per_sec"], False)],
         None, "", "/s")


ingest_runs = []


def ingest_shared(runs):
    rows = []
    for d in sorted(runs, key=lambda d: d["config"]["batch_size"]):
        n = d["config"]["batch_size"]
        ratio = d["http_shared"]["events_per_sec"] / d["http"]["events_per_sec"]
        rows.append((f'{n:,} event{"s" if n > 1 else ""} per request', ratio, True))
    bars("docs/img/ingest-shared-registry.svg",
         "bench ingest: keys in Postgres vs the embedded registry (throughput ratio; 2 cores)",
         rows, 1.0, "same as embedded", "×", "{:.2f}")


def forward(f):
    one, fwd = f["one_process"]["latency_ms"], f["through_non_owner"]["latency_ms"]
    rows = [("one process (owner), p50", one["p50"], False),
            ("through a non-owner, p50", fwd["p50"], True),
            ("one process (owner), p99", one["p99"], False),
            ("through a non-owner, p99", fwd["p99"], True)]
    bars("docs/img/forward-latency.svg",
         f'bench forward: a {f["batch_size"]:,}-event batch, answered once durable (2 cores)',
         rows, None, "", "ms", "{:.0f}")


def serve_startup(s):
    b, a = s["before"], s["after"]
    rows = [("before the console, median", b["median_ms"], False),
            ("with the console, median", a["median_ms"], True),
            ("before the console, p90", b["p90_ms"], False),
            ("with the console, p90", a["p90_ms"], True)]
    bars("docs/img/serve-startup.svg",
         f'serve: spawn to the first 200 of /readyz, {s["runs"]} starts each, alternating (2 cores)',
         rows, None, "", "ms", "{:.0f}")


for path in sys.argv[1:]:
    data = json.load(open(path))
    if data.get("http_shared"):
        ingest_runs.append(data)
    elif "in_process_ms" in data:
        eligibility(data)
    elif "leads_per_sec" in data:
        materialize(data)
        if data.get("shared"):
            materialize_shared(data)
    elif "engine" in data and "baseline" in data:
        deliver(data)
    elif "webhooks_per_sec" in data:
        domain(data)
    elif "through_non_owner" in data:
        forward(data)
    elif data.get("kind") == "serve_startup":
        serve_startup(data)
    else:
        sys.exit(f"{path}: not bench eligibility, materialize, domain, forward or ingest --database-url --json output")
if ingest_runs:
    ingest_shared(ingest_runs)
