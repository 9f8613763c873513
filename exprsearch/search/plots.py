"""expressions and stored runs --> figures (PNG or SVG files; no display needed).

* ``plot_nonlinearity`` -- an FFN expression's response along random directions through the
  input space and as a 2-D surface (the EfficientBERT paper's figure comparing FFNs);
* ``plot_progress`` -- best score vs candidates evaluated, one line per run/sampler;
* ``plot_pareto`` -- score vs parameters and vs latency, the front highlighted, the standard FFN and
  the teacher marked;
* ``plot_proxy`` -- a cheap proxy score vs the final score, with Kendall's tau.
Every function returns the path it wrote.  Invariant: only matplotlib's Agg backend is used.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

from exprsearch.errors import ConfigError
from exprsearch.lang.expr import Expr
from exprsearch.lang.numeric import Probe, evaluate_at

from .stats import kendall_tau

__all__ = ["plot_nonlinearity", "plot_progress", "plot_pareto", "plot_proxy", "kendall_tau"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'exprsearch[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_nonlinearity(exprs: Expr | Sequence[Expr], path: str | Path, *, directions: int = 3,
                      span: float = 4.0, seed: int = 0, labels: Sequence[str] | None = None) -> Path:
    """Top row: output channel 0 of each expression along ``directions`` random unit directions
    (x = t v, t in [-span, span]); bottom row: the same channel over a 2-D plane (x = a v1 + b v2).
    Weights are the numeric probe's fixed random weights, so different expressions are comparable."""
    plt = _plt()
    exprs = [exprs] if isinstance(exprs, Expr) else list(exprs)
    probe = Probe(seed=seed)
    h = probe.hidden
    g = torch.Generator().manual_seed(seed + 1)
    dirs = torch.randn(directions, h, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    t = torch.linspace(-span, span, 201, dtype=torch.float64)
    fig, axes = plt.subplots(2, len(exprs), figsize=(4.8 * len(exprs), 8), squeeze=False, constrained_layout=True)
    for j, e in enumerate(exprs):
        ax = axes[0][j]
        for k in range(directions):
            y = evaluate_at(e, t[:, None] * dirs[k], probe)[:, 0]
            ax.plot(t.numpy(), y.numpy(), label=f"direction {k + 1}")
        title = labels[j] if labels else str(e)
        ax.set_title(title if len(title) <= 48 else title[:45] + "...", fontsize=8)
        ax.set_xlabel("t (x = t v)")
        ax.set_ylabel("output channel 0")
        ax.legend(fontsize=7)
        grid = torch.linspace(-span, span, 81, dtype=torch.float64)
        a, b = torch.meshgrid(grid, grid, indexing="ij")
        x = a.reshape(-1, 1) * dirs[0] + b.reshape(-1, 1) * dirs[min(1, directions - 1)]
        z = evaluate_at(e, x, probe)[:, 0].reshape(81, 81)
        im = axes[1][j].imshow(z.numpy(), origin="lower", extent=(-span, span, -span, span), cmap="viridis")
        axes[1][j].set_xlabel("a")
        axes[1][j].set_ylabel("b")
        fig.colorbar(im, ax=axes[1][j], fraction=0.046)
    fig.suptitle("FFN response (x = a v1 + b v2, channel 0)", fontsize=10)
    return _save(fig, path)


def plot_progress(runs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Best score so far vs candidates evaluated, one line per run (label -> stored rows)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, rows in runs.items():
        best, xs, ys = -math.inf, [], []
        for i, r in enumerate(sorted(rows, key=lambda r: r.get("seq", 0)), 1):
            if r.get("status") == "ok" and r.get("score") is not None and "@" not in r["key"]:
                best = max(best, r["score"])
            if best > -math.inf:
                xs.append(i)
                ys.append(best)
        ax.step(xs, ys, where="post", label=label)
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel("best dev score so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_exits(tables: list[dict[str, Any]], path: str | Path) -> Path:
    """Dev score vs mean layers run, one line per stored exit table (``Store.exits`` rows)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for tab in tables:
        rows = sorted((r for r in tab["rows"] if not r.get("chosen")), key=lambda r: r["avg_layers"])
        ax.plot([r["avg_layers"] for r in rows], [r["score"] for r in rows], "o-", label=f"{tab['task']} {tab['policy']}")
        for r in tab["rows"]:
            if r.get("chosen"):
                ax.plot([r["avg_layers"]], [r["score"]], "k*", markersize=12)
    ax.set_xlabel("layers run per example (mean)")
    ax.set_ylabel("dev score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pareto(rows: list[dict[str, Any]], path: str | Path, *, standard: float | None = None,
                teacher: float | None = None) -> Path:
    """Score vs parameters and vs latency; Pareto-optimal candidates highlighted."""
    from .leaderboard import pareto
    plt = _plt()
    ok = [r for r in rows if r.get("status") == "ok" and r.get("score") is not None]
    front = {id(r) for r in pareto(ok)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    relative = any((r.get("latency") or {}).get("rel") is not None for r in ok)  # else a run stored before

    def x(r: dict[str, Any], key: str) -> float | None:
        if key == "params":
            return r["params"] / 1e6 if r.get("params") else None
        return (r.get("latency") or {}).get("rel") if relative else r.get("latency_ms")

    for ax, key, label in ((axes[0], "params", "parameters (M)"),
                           (axes[1], "latency", "latency / the standard FFN's, timed alongside" if relative
                            else "latency (ms, one timing each)")):
        pts = [(v, r["score"], id(r) in front) for r in ok if (v := x(r, key))]
        if pts:
            ax.scatter([p[0] for p in pts if not p[2]], [p[1] for p in pts if not p[2]], s=18, alpha=0.5,
                       label="candidates")
            fr = sorted((p for p in pts if p[2]), key=lambda p: p[0])
            ax.plot([p[0] for p in fr], [p[1] for p in fr], "o-", color="C3", label="Pareto front")
        if standard is not None:
            ax.axhline(standard, color="C2", ls="--", label="standard FFN")
        if teacher is not None:
            ax.axhline(teacher, color="k", ls=":", label="teacher")
        ax.set_xlabel(label)
        ax.set_ylabel("dev score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_proxy(pairs: Sequence[tuple[float, float]], path: str | Path, *, proxy_label: str = "proxy score",
               final_label: str = "final dev score") -> Path:
    """Proxy vs final score scatter, titled with Kendall's tau."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    ax.scatter(xs, ys, s=20)
    ax.set_xlabel(proxy_label)
    ax.set_ylabel(final_label)
    ax.set_title(f"Kendall tau = {kendall_tau(xs, ys):.3f} (n = {len(pairs)})", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
