"""``exprsearch compile``: an expression as generated fx code, its cost table, and its speed."""
from __future__ import annotations

import argparse

import torch

from exprsearch.lang.display import table
from exprsearch.lang.parsing import parse

from .main import command, emit


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("expr", help="an FFN expression")
    p.add_argument("--hidden", type=int, default=384, help="H, the model width (default 384)")
    p.add_argument("--base-width", type=int, default=None, help="D, the base FFN width (default: H)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length for --bench (default 128)")
    p.add_argument("--batch", type=int, default=32, help="batch size for --bench (default 32)")
    p.add_argument("--code", action="store_true", help="print the generated fx code")
    p.add_argument("--cost", action="store_true", help="print the cost table (default if nothing else asked)")
    p.add_argument("--bench", action="store_true", help="time it against the hand-written standard FFN")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where --bench runs (default: cuda when there is one, else cpu)")
    p.add_argument("--relaxed", action="store_true", help="apply the relaxed validity rules")


@command("compile", "lower an expression to a torch.fx FFN; show its code, cost and speed")(_options)
def cmd_compile(ns: argparse.Namespace) -> int:
    from exprsearch.compiler import FFNConfig, ffn_cost, lower
    from exprsearch.lang.standard import STANDARD_FFN
    from exprsearch.compiler.timing import StandardFFN, time_call

    from .checks import MAX_BATCH, check_count
    check_count("hidden", ns.hidden, 1, 16_384)
    check_count("base_width", ns.base_width, 1, 65_536)
    check_count("seq_len", ns.seq_len, 1, 4_096)
    check_count("batch", ns.batch, 1, MAX_BATCH)
    e = parse(ns.expr, strict=not ns.relaxed)
    cfg = FFNConfig(hidden=ns.hidden, base_width=ns.base_width)
    gm = lower(e, cfg)
    cost = ffn_cost(e, cfg)
    std = ffn_cost(STANDARD_FFN, cfg)
    out: dict = {"expression": str(e), "hidden": cfg.hidden, "base_width": cfg.D,
                 "cost": cost.as_dict(), "standard_ffn_cost": std.as_dict()}
    lines = [f"expression  {e}   (H = {cfg.hidden}, D = {cfg.D})"]
    if ns.code:
        out["code"] = gm.code
        lines.append(gm.code.strip())
    if ns.cost or not (ns.code or ns.bench):
        rows = [[k, f"{v:,.0f}", f"{getattr(std, k) if k != 'flops_per_token' else std.flops_per_token:,.0f}"]
                for k, v in cost.as_dict().items()]
        lines.append(table(rows, ["per layer", "this FFN", "standard FFN (D)"]))
    if ns.bench:
        dev = torch.device(ns.device)
        x = torch.randn(ns.batch, ns.seq_len, cfg.hidden, device=dev)
        mine = gm.to(dev).eval()
        ref = StandardFFN(cfg.hidden, cfg.D).to(dev).eval()
        t_mine = time_call(lambda: mine(x), dev)
        t_ref = time_call(lambda: ref(x), dev)
        out["bench"] = {"device": str(dev), "seconds": t_mine, "standard_seconds": t_ref,
                        "ratio": t_mine / t_ref}
        lines.append(f"bench ({dev}, B{ns.batch}xL{ns.seq_len}): {t_mine * 1e3:.3f} ms vs hand-written "
                     f"standard FFN {t_ref * 1e3:.3f} ms ({t_mine / t_ref:.2f}x)")
    emit(ns, "\n".join(lines), out)
    return 0
