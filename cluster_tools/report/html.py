"""``report.html``: one self-contained page (the PNGs embedded as data, no script, no CDN), so it
opens offline and can be mailed or attached to a ticket as it is."""
from __future__ import annotations

import base64
import html
import math
import time
from pathlib import Path
from typing import Any

from . import plots
from .data import RunData

STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.sub { color: #666; } table { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #cf222e; font-weight: 600; }
.verdict { font-size: 1.3em; padding: 0.3em 0.7em; border-radius: 4px; display: inline-block; }
.verdict.pass { background: #dafbe1; } .verdict.fail { background: #ffebe9; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; } code { font-size: 12px; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_esc(path.stem)}" src="data:image/png;base64,{data}">'


def _verdict(verdict: dict[str, Any]) -> str:
    passed = verdict.get("verdict") == "PASS"
    rows = []
    for c in verdict.get("checks", []):
        failures = "".join(f"<li>{_esc(f.get('evidence', f))}</li>" for f in c.get("failures", [])[:10])
        more = c.get("failures_total", 0) - min(10, len(c.get("failures", [])))
        if more > 0:
            failures += f"<li>... and {more} more (report.json)</li>"
        cls = "pass" if c["passed"] else "fail"
        rows.append(f'<tr><td class="{cls}">{"PASS" if c["passed"] else "FAIL"}</td><td>{_esc(c["name"])}</td>'
                    f"<td>{_esc(c['summary'])}{f'<ul>{failures}</ul>' if failures else ''}</td></tr>")
    return (f'<p><span class="verdict {"pass" if passed else "fail"}">verdict: {_esc(verdict.get("verdict"))}</span></p>'
            f"<table><tr><th></th><th>check</th><th>result</th></tr>{''.join(rows)}</table>")


def _traffic(traffic: dict[str, Any]) -> str:
    head = ("<tr><th>operation</th><th>calls</th><th>ok</th><th>errors</th><th>req/s</th><th>p50 ms</th>"
            "<th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>")

    def row(name: str, r: dict[str, Any]) -> str:
        lat = r["latency_ms"]
        cells = [r["calls"], r["ok"], sum(r["errors"].values()), r["throughput_rps"], lat["p50"], lat["p90"],
                 lat["p99"], lat["max"]]
        return f"<tr><td>{_esc(name)}</td>" + "".join(f'<td class="num">{_esc(c)}</td>' for c in cells) + "</tr>"
    rows = [row(n, r) for n, r in traffic.get("operations", {}).items()]
    if "total" in traffic:
        rows.append(row("total", traffic["total"]))
    errors = [(n, exc, count, r.get("error_messages", {}).get(exc, ""))
              for n, r in traffic.get("operations", {}).items() for exc, count in r["errors"].items()]
    extra = ""
    if errors:
        extra = ("<h3>errors by exception</h3><table><tr><th>operation</th><th>exception</th><th>calls</th>"
                 "<th>first message</th></tr>" + "".join(
                     f'<tr><td>{_esc(n)}</td><td>{_esc(e)}</td><td class="num">{c}</td><td>{_esc(m[:200])}</td></tr>'
                     for n, e, c, m in errors) + "</table>")
    return f"<table>{head}{''.join(rows)}</table>{extra}"


def _faults(run: RunData) -> str:
    if not run.faults:
        return "<p>No faults.</p>"
    rows = "".join(
        f"<tr><td>{_esc(w.kind)}</td><td>{_esc(w.node)}</td><td class='num'>{w.start - run.t0:.1f}</td>"
        f"<td class='num'>{(w.end - run.t0) if math.isfinite(w.end) else float('inf'):.1f}</td></tr>"
        for w in run.faults)
    return f"<table><tr><th>fault</th><th>node</th><th>from (s)</th><th>node back (s)</th></tr>{rows}</table>"


def write_report(out: Path, run: RunData, *, verdict: dict[str, Any] | None = None,
                 traffic: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                 name: str = "report") -> Path:
    """Draw the PNGs into ``out`` and write ``out/<name>.html`` beside them; returns its path.
    With the default name the files are report.html, latency.png ...; otherwise <name>.html,
    <name>-latency.png ..."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots.draw_all(run, out, "" if name == "report" else f"{name}-")
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.t0))
    parts = [f"<h1>{_esc(run.title)}</h1>",
             f'<p class="sub">started {started}, {run.end - run.t0:.1f} s, {len(run.calls):,} calls</p>']
    if verdict is not None:
        parts += ["<h2>Verdict</h2>", _verdict(verdict)]
    parts += ["<h2>Latency of every call</h2>", _image(images[0]),
              "<h2>Throughput and errors</h2>", _image(images[1])]
    if len(images) > 2:
        parts += ["<h2>HSM nodes</h2>", _image(images[2])]
    if run.faults or verdict is not None:
        parts += ["<h2>Faults</h2>", _faults(run)]
    if traffic:
        parts += ["<h2>Results by operation</h2>", _traffic(traffic)]
    if config:
        parts += ["<h2>Configuration</h2>", "<table>" + "".join(
            f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in config.items()) + "</table>"]
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_esc(run.title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    path = out / f"{name}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
