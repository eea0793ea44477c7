#!/usr/bin/env python3
"""Draws docs/img/deliver-throughput.svg from `leadstream bench deliver --json` runs.

usage: python3 docs/plot_deliver.py LABEL=run.json [LABEL=run.json ...]
"""
import json
import sys

rows = []
for arg in sys.argv[1:]:
    label, path = arg.split("=", 1)
    d = json.load(open(path))
    rows.append((f"{label}, engine", d["engine"]["deliveries_per_sec"]))
    rows.append((f"{label}, bare client", d["baseline"]["deliveries_per_sec"]))
w, h = 720, 60 + 40 * len(rows)
mx = max(max(v for _, v in rows), 20000) * 1.1
x0 = 250
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">',
       '<text x="10" y="22" font-size="15">bench deliver: deliveries per second (2 cores; target 20,000)</text>']
tx = x0 + (w - x0 - 80) * 20000 / mx
out.append(f'<line x1="{tx:.0f}" y1="32" x2="{tx:.0f}" y2="{h-10}" stroke="#c00" stroke-dasharray="4"/><text x="{tx+3:.0f}" y="{h-12}" fill="#c00">20,000</text>')
for i, (label, v) in enumerate(rows):
    y = 40 + 40 * i
    bw = (w - x0 - 80) * v / mx
    col = "#4a7bd0" if "engine" in label else "#999"
    out.append(f'<text x="10" y="{y+18}">{label}</text><rect x="{x0}" y="{y+4}" width="{bw:.0f}" height="22" fill="{col}"/><text x="{x0+bw+5:.0f}" y="{y+20}">{v:,.0f}</text>')
out.append("</svg>")
open("docs/img/deliver-throughput.svg", "w").write("\n".join(out))
