"""stored run --> one self-contained HTML page: config, leaderboard, plots, best spec, how to reproduce.

Input: a ``Store`` and a run id.  Output: an HTML file with every image embedded (base64 PNG), so
it can be mailed or archived alone.  Sections (each an ``<h2 id=...>``, tested): config,
leaderboard, pareto, progress, nonlinearity, proxy, best, reproduce.
"""
from __future__ import annotations

import base64
import html
import json
import os
import shlex
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from . import liveness
from .leaderboard import LATENCY_FLOOR, latency_text, pareto, score_text, scored_on, standard_row
from .store import Store, row_spec

__all__ = ["write_report", "SECTIONS"]

SECTIONS = ("config", "leaderboard", "pareto", "progress", "nonlinearity", "proxy", "exits", "best", "distilled",
            "reproduce")

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f0f0f0}td:nth-child(3){white-space:nowrap}code,pre{background:#f6f6f6;padding:2px 4px;font-size:12px}
pre{padding:8px;overflow-x:auto}img{max-width:100%;border:1px solid #eee}.num{text-align:right}
code{line-height:1.5;display:inline-block;overflow-wrap:anywhere;padding-bottom:2px}"""  # underscores and descenders show


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict[str, Any]]) -> str:
    """The leaderboard's rows as the terminal prints them: score ± its bootstrap std (and seeds),
    the rows it was read from, latency ± its spread and relative to the standard FFN."""
    head = ("<tr><th>#</th><th>score ± boot. std (seeds)</th><th>scored on (main metric)</th><th>params (M)</th>"
            "<th>FLOPs/token (M)</th><th>latency, ms (x standard FFN)</th><th>stage</th><th>spec</th></tr>")
    body = []
    for i, r in enumerate(rows, 1):
        body.append(f"<tr><td>{i}</td><td class=num>{html.escape(score_text(r))}</td>"
                    f"<td>{html.escape(scored_on(r))}</td><td class=num>{(r.get('params') or 0) / 1e6:.2f}</td>"
                    f"<td class=num>{(r.get('flops') or 0) / 1e6:.1f}</td>"
                    f"<td class=num>{html.escape(latency_text(r) or '')}</td>"
                    f"<td>{r.get('stage')}</td><td><code>{html.escape(r['spec'])}</code></td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _reproduce(cfg: dict[str, Any], run_id: str) -> str:
    s, e = cfg.get("search", {}), cfg.get("eval", {})
    args = ["exprsearch", "search"]
    for k, v in list(s.items()) + [(k, v) for k, v in e.items() if k not in ("seed", "device", "cache_dir")]:
        if v is None or v == "" or v == () or v == []:
            continue
        if k == "tasks":
            args += ["--tasks", ",".join(v)]
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool) and k.startswith("no_"):  # --no-kd / --kd (options.py)
            args.append(flag if v else "--" + k[3:].replace("_", "-"))
        elif isinstance(v, bool):
            args.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            args += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return " ".join(shlex.quote(a) for a in args)


def _exits_html(tables: list[dict[str, Any]], tmp: Path, plot: Callable[..., Path]) -> str:
    if not tables:
        return "<p>no exit policy measured for this run (<code>exprsearch exits RUN --task TASK</code>)</p>"
    head = "<tr><th>task</th><th>policy</th><th>setting</th><th>score</th><th>avg layers</th><th>speed-up b1</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(t['task'])}</td><td>{html.escape(r['policy'])}{' *' if r.get('chosen') else ''}</td>"
        f"<td>{html.escape(json.dumps(r['setting']))}</td><td>{r['score']:.2f}</td><td>{r['avg_layers']:.2f}</td>"
        f"<td>{r.get('speedup_b1', float('nan')):.2f}</td></tr>" for t in tables for r in t["rows"])
    return _img(plot(tables, tmp / "exits.png")) + f"<table>{head}{body}</table><p>* the chosen setting</p>"


def _link(target: Path, page: Path) -> str:
    """``target`` as a link from the page at ``page``: relative, so the report and the models can
    move together (a file:// URL only where no relative path exists, e.g. another drive).

    >>> _link(Path("/w/students/sst2/README.md"), Path("/w/reports/run.html"))
    '../students/sst2/README.md'
    """
    try:
        return urllib.parse.quote(Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix())
    except ValueError:
        return target.resolve().as_uri()


def _distilled_html(items: list[dict[str, Any]], page: Path) -> str:
    """Links to the model cards ``exprsearch distill`` wrote for this run."""
    if not items:
        return "<p>none yet: <code>exprsearch distill RUN --task TASK -o DIR</code> trains and saves one.</p>"
    rows = "".join(f"<li>{html.escape(a['task'])}: <a href=\"{html.escape(_link(Path(a['dir']) / 'README.md', page))}"
                   f"\">{html.escape(a['dir'])}</a> (dev {a['score']:.2f} ± {a['std']:.2f})</li>" for a in items)
    return f"<ul>{rows}</ul>"


def write_report(store: Store, run_id: str, out: str | Path, *, top: int = 15) -> Path:
    from .plots import (
        plot_exits,
        plot_nonlinearity,
        plot_pareto,
        plot_progress,
        plot_proxy,
    )
    info, rows = store.run(run_id), store.candidates(run_id)
    ok = sorted((r for r in rows if r["status"] == "ok" and r.get("score") is not None), key=lambda r: -r["score"])
    std = next((r["score"] for r in ok if standard_row(r)), None)
    tmp = Path(tempfile.mkdtemp(prefix="exprsearch-report-"))
    figs: dict[str, str] = {}
    figs["pareto"] = _img(plot_pareto(rows, tmp / "pareto.png", standard=std)) if ok else "<p>no successful candidate</p>"
    figs["progress"] = _img(plot_progress({run_id: rows}, tmp / "progress.png")) if ok else "<p>-</p>"
    best = row_spec(ok[0]["spec"]) if ok else None
    if ok and best is None:  # a row of a newer version (an operator this one lacks), or damaged
        figs["nonlinearity"] = "<p>-: the best row's spec is one this version cannot read</p>"
    elif best is not None:
        distinct = list(dict.fromkeys(best.layers))
        shown = distinct[:4]
        figs["nonlinearity"] = (f"<p>{len(shown)} of the best model's {len(distinct)} distinct layer expressions "
                                f"({len(best.layers)} layers)" + ("" if len(shown) == len(distinct) else
                                ": the first four; the rest are in the spec below") + ".</p>"
                                + _img(plot_nonlinearity(shown, tmp / "nonlinearity.png")))
    else:
        figs["nonlinearity"] = "<p>-</p>"
    # the proxy (one training seed) against the mean over the seeds it was re-scored with
    pairs = [(r["seed_scores"][0], r["score"]) for r in ok if len(r.get("seed_scores") or []) > 1]
    figs["proxy"] = (_img(plot_proxy(pairs, tmp / "proxy.png", proxy_label="first-seed proxy score",
                                     final_label="mean over re-scoring seeds"))
                     if len(pairs) >= 3 else f"<p>{len(pairs)} re-scored candidate(s); the plot needs 3 "
                                             f"(search with --rerank N, N >= 3).</p>")
    figs["distilled"] = _distilled_html(store.artifacts(run_id), Path(out))
    figs["exits"] = _exits_html(store.exits(run_id), tmp, plot_exits)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "stopped")}
    params = "-" if ok and ok[0]["params"] is None else f"{ok[0]['params'] / 1e6:.2f}M" if ok else ""  # damaged: -
    best_html = (f"<p>score {ok[0]['score']:.2f}, {params} params</p><pre>"
                 + html.escape(best.to_lines() if best is not None else ok[0]["spec"]) + "</pre>") if ok else "<p>-</p>"
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>exprsearch run {html.escape(run_id)}</title>
<style>{_CSS}</style></head><body>
<h1>exprsearch run <code>{html.escape(run_id)}</code></h1>
<p>{len(rows)} candidates ({counts['ok']} ok, {counts['failed']} failed, {counts['stopped']} stopped); status
{html.escape(liveness.shown(info['status'], info.get('notes'))[0])}; code version {html.escape(str(info['code_version']))}; report written
{time.strftime('%Y-%m-%d %H:%M')}.</p>
<h2 id="config">Config</h2><details><summary>search and evaluation settings (JSON)</summary>
<pre>{html.escape(json.dumps(info['config'], indent=2))}</pre></details>
<h2 id="leaderboard">Leaderboard</h2>{_table(ok[:top])}
<h2 id="pareto">Pareto front (score vs parameters vs latency)</h2>
<p>Latency is compared relative to the standard-FFN student timed beside each candidate; rows closer than
their measured spreads (at least {100 * LATENCY_FLOOR:.0f} %) tie.</p>{figs['pareto']}{_table(pareto(ok))}
<h2 id="progress">Search progress</h2>{figs['progress']}
<h2 id="nonlinearity">Nonlinearity of the best model's FFNs</h2>{figs['nonlinearity']}
<h2 id="proxy">Proxy (one seed) vs re-scored mean</h2>{figs['proxy']}
<h2 id="exits">Dynamic inference (early exit, layer skipping)</h2>{figs['exits']}
<h2 id="best">Best per-layer model spec</h2>{best_html}
<h2 id="distilled">Distilled students</h2>{figs['distilled']}
<h2 id="reproduce">How to reproduce</h2><pre>{html.escape(_reproduce(info['config'], run_id))}</pre>
<p>Then <code>exprsearch show RUN</code> prints this run's leaderboard; save the spec above as
<code>best.ffn</code> and <code>exprsearch eval best.ffn --task TASK</code> re-evaluates it.</p>
</body></html>"""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
