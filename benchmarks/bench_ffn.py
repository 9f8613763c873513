"""Compiled FFNs vs hand-written modules of the same math, and vs a matmul-only bound.

For the standard FFN (D = 4H) and three published EfficientBERT expressions (D = H) at
H in {312, 384, 768}, batch 32 x length 128, bf16 autocast, inference:
  * eager_ratio    = compiled (fx, eager) / hand-written nn.Module of the same math   (goal <= 1.02),
                     wall clock per call, the two timed in alternating rounds (medians);
  * compile_ratio  = compiled + torch.compile / matmul-only bound of the same linears (goal <= 1.15),
                     both as GPU time: each captured in a CUDA graph and timed over replays, so
                     launch overhead (which dominates at this size) is out of both numbers.
The hand-written modules get the compiled module's weights and their outputs are checked equal.
Writes benchmarks/results/bench_ffn.json.  Needs a GPU for meaningful numbers:

    PYTHONPATH=. python benchmarks/bench_ffn.py [--hidden 312,384,768] [--no-compile]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import write_json  # noqa: E402  (puts the checkout on sys.path)
from torch import nn

import exprsearch as es  # noqa: E402
from exprsearch.compiler import FFNConfig, lower  # noqa: E402
from exprsearch.compiler.lower import block, blocks_of  # noqa: E402
from exprsearch.compiler.timing import matmul_bound, time_call  # noqa: E402

torch._dynamo.config.recompile_limit = 64  # one Hand.forward code object serves every case

OUT = Path(__file__).parent / "results" / "bench_ffn.json"


class Hand(nn.Module):
    """Hand-written blocks ``LN(x + Dropout(f(x)))`` for the benchmarked expressions."""

    def __init__(self, kind: str, hidden: int, inner: int, blocks: int) -> None:
        super().__init__()
        self.kind, self.inner = kind, inner
        self.w1 = nn.ModuleList(nn.Linear(hidden, inner) for _ in range(blocks))
        self.w2 = nn.ModuleList(nn.Linear(inner, hidden) for _ in range(blocks))
        self.ln = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-12) for _ in range(blocks))
        self.drop = nn.Dropout(0.1)

    def f(self, x: torch.Tensor, w1: nn.Linear, w2: nn.Linear) -> torch.Tensor:
        if self.kind == "standard":
            return w2(F.gelu(w1(x)))
        if self.kind == "max_tanh":
            return w2(F.gelu(w1(torch.maximum(x, torch.tanh(x)))))
        if self.kind == "relu_mul":
            return w2(torch.relu(w1(x) * x[..., :self.inner]))
        return torch.tanh(w2(F.gelu(w1(x))))  # tanh_outer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w1, w2, ln in zip(self.w1, self.w2, self.ln):
            x = ln(x + self.drop(self.f(x, w1, w2)))
        return x

    @torch.no_grad()
    def load_from(self, gm: nn.Module) -> None:
        for b, (w1, w2, ln) in enumerate(zip(self.w1, self.w2, self.ln)):
            src = block(gm, b)
            w1.weight.copy_(src.wb1.weight), w1.bias.copy_(src.wb1.bias)
            w2.weight.copy_(src.wb2.weight), w2.bias.copy_(src.wb2.bias)
            ln.load_state_dict(src.ln.state_dict())


CASES = [  # (name, expression, D / H, hand-written kind)
    ("standard", "linear1_1(gelu(linear1_1(x,wb1)),wb2)", 4, "standard"),
    ("efficientbert_l4", "linear2_2(gelu(linear2_2(max(x,tanh(x)),wb1)),wb2)", 1, "max_tanh"),
    ("efficientbert_l5", "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", 1, "relu_mul"),
    ("efficientbert_l1", "tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))", 1, "tanh_outer"),
]


def run_case(name: str, text: str, ratio: int, kind: str, h: int, dev: torch.device, batch: int,
             seq: int, compile_: bool) -> dict:
    e = es.parse(text)
    cfg = FFNConfig(hidden=h, base_width=ratio * h)
    gm = lower(e, cfg).to(dev).eval()
    inner = cfg.inner(e.linears()[0].op.ratio)
    hand = Hand(kind, h, inner, blocks_of(e)).to(dev).eval()
    hand.load_from(gm)
    x = torch.randn(batch, seq, h, device=dev)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        diff = (gm(x).float() - hand(x).float()).abs().max().item()
    r: dict = {"case": name, "expression": text, "hidden": h, "base_width": cfg.D, "inner": inner,
               "blocks": blocks_of(e), "max_abs_diff_vs_hand": diff}
    t_gm, t_hand = [], []
    for _ in range(7):  # alternate, so clock drift hits both alike
        t_gm.append(time_call(lambda: gm(x), dev, repeats=1))
        t_hand.append(time_call(lambda: hand(x), dev, repeats=1))
    r["eager_s"], r["hand_s"] = statistics.median(t_gm), statistics.median(t_hand)
    r["eager_ratio"] = r["eager_s"] / r["hand_s"]
    shapes = [(inner, h), (h, inner)] * blocks_of(e)
    xb = x.to(torch.bfloat16) if dev.type == "cuda" else x
    mm = matmul_bound(shapes, xb)
    r["matmul_bound_s"] = time_call(mm, dev)
    flops = 2 * batch * seq * sum(o * i for o, i in shapes)
    r["eager_matmul_tflops"] = flops / r["eager_s"] / 1e12
    if dev.type == "cuda":
        r["graph_eager_s"] = graph_time(lambda: gm(x))
        r["graph_hand_s"] = graph_time(lambda: hand(x))
        r["graph_matmul_bound_s"] = graph_time(mm, autocast=False)
        r["matmul_bound_tflops"] = flops / r["graph_matmul_bound_s"] / 1e12
    if compile_ and dev.type == "cuda":
        t = time.perf_counter()
        cgm = torch.compile(gm, mode="max-autotune-no-cudagraphs")
        r["graph_compiled_s"] = graph_time(lambda: cgm(x))
        r["compile_wall_s"] = time.perf_counter() - t
        r["compile_ratio"] = r["graph_compiled_s"] / r["graph_matmul_bound_s"]
        r["graph_eager_ratio_to_bound"] = r["graph_eager_s"] / r["graph_matmul_bound_s"]
    return r


def graph_time(fn, autocast: bool = True, replays: int = 200) -> float:
    """GPU seconds per call: ``fn`` captured once in a CUDA graph, median over timed replays."""
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        g.replay()
        torch.cuda.synchronize()
        start.record()
        for _ in range(replays):
            g.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / replays)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", default="312,384,768")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    rows = []
    for h in (int(v) for v in args.hidden.split(",")):
        for name, text, ratio, kind in CASES:
            r = run_case(name, text, ratio, kind, h, dev, args.batch, args.seq, not args.no_compile)
            rows.append(r)
            print(json.dumps({k: (round(v, 7) if isinstance(v, float) else v) for k, v in r.items()
                              if k != "expression"}), flush=True)
    result = {"benchmark": "bench_ffn", "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
              platform.processor() or "cpu", "torch": torch.__version__, "batch": args.batch, "seq": args.seq,
              "dtype": "bf16 autocast" if dev.type == "cuda" else "fp32",
              "goals": {"eager_ratio": 1.02, "compile_ratio": 1.15}, "rows": rows}
    write_json(args.out, result)
    print(f"{'case':18} {'H':>4} {'eager/hand':>10} {'compiled/bound':>14} {'graph eager/bound':>17}")
    for r in rows:
        print(f"{r['case']:18} {r['hidden']:>4} {r['eager_ratio']:>10.3f} {r.get('compile_ratio', float('nan')):>14.3f} "
              f"{r.get('graph_eager_ratio_to_bound', float('nan')):>17.3f}")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
