"""lines typed by a person --> library calls: the ``exprsearch repl``.

Typing an expression shows its canonical form and validity; ``:commands`` are thin calls into the
library (``:help`` lists them).  Interactive sessions use prompt_toolkit (history across
sessions, completion of op names and commands, syntax errors with a caret on enter); piped input
(``exprsearch repl < script.txt``) runs the same commands without it.  Invariant: no input ever
ends the session with a traceback -- errors print one message and the loop goes on.

>>> import io
>>> out = io.StringIO()
>>> Repl(out=out).run_lines(["linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)", ":dag"])
>>> print(out.getvalue().strip())
canonical  linear1_2(relu(mul(x,linear1_2(x,wb1))),wb2)
valid      yes (strict)   size 6, depth 4
nodes 7, edges 7, depth 4, shared 1, ops linear1_2, mul, relu
"""
from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, TextIO, TypeVar

from exprsearch.errors import DSLError, ExprSearchError, ValidityError
from exprsearch.lang.canon import canonicalize
from exprsearch.lang.dag import dag_stats, to_dag
from exprsearch.lang.dedup import Deduper
from exprsearch.lang.display import ast_tree
from exprsearch.lang.dsl_errors import FIELD_MAX
from exprsearch.lang.expr import Expr, ModelSpec
from exprsearch.lang.ops import OPS, Kind, ops_of
from exprsearch.lang.parsing import parse
from exprsearch.lang.validity import validate

from .common import resolve_run

if TYPE_CHECKING:
    from exprsearch.kd.protocol import EvalConfig

__all__ = ["Repl", "COMMANDS", "main"]

D = TypeVar("D")  # a default of Repl._ints

GEGLU_EXAMPLE = "linear1_3(mul(gelu(linear1_3(x,wb1)),linear1_3(x,wb3)),wb2)"
MAX_SIZE = FIELD_MAX["hidden"]  # largest H, D, L, step or row count a command takes (a spec's widest model)

COMMANDS: dict[str, str] = {
    ":ast": "[EXPR]          the typed AST as a tree",
    ":canon": "[EXPR]        canonical form and the dedup group it belongs to (this session)",
    ":sympy": "[EXPR]        the elementwise algebra, simplified (linears are opaque functions)",
    ":dag": "[EXPR]          node / edge / depth counts of the shared-subexpression DAG",
    ":fx": "[H [D]]          the generated torch.fx code",
    ":cost": "[H [D [L]]]    params, FLOPs per token, activation memory (L: sequence length)",
    ":bench": "[H [D]]       time vs the hand-written standard FFN on the current device",
    ":plot": "[FILE]         the nonlinearity plot (default repl-plot.png)",
    ":eval": "TASK [STEPS] [exit=entropy:0.2|patience:2|gate]   a quick KD evaluation (CPU preset); exit= adds an exit policy",
    ":load": "RUN [STORE]    load a stored search run ('last' = newest)",
    ":top": "[N]             the loaded run's leaderboard",
    ":help": "                this list",
    ":quit": "                leave",
}


class Repl:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.current: Expr | None = None
        self.dedup = Deduper(use_sympy=True, full_proofs=True)
        self.members: dict[str, list[str]] = {}
        self.run: tuple[Any, str] | None = None
        self.hidden, self.base, self.seq = 384, None, 128

    def say(self, text: str) -> None:
        print(text, file=self.out)

    # -- dispatch -------------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Run one line; False means "quit"."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        try:
            if not line.startswith(":"):
                self.show(line)
                return True
            parts = shlex.split(line)
            cmd, args = parts[0], parts[1:]
            if cmd in (":quit", ":q", ":exit"):
                return False
            fn: Callable[[list[str]], None] | None = getattr(self, "cmd_" + cmd[1:], None)
            if fn is None:
                from exprsearch.errors import suggest
                best = suggest(cmd, list(COMMANDS))
                self.say(f"error: unknown command {cmd}" + (f"; did you mean {best}?" if best else "; :help lists them"))
                return True
            fn(args)
        except ExprSearchError as err:
            self.say(f"error: {err}")
        except ValueError as err:
            self.say(f"error: {err}")
        except KeyboardInterrupt:
            self.say("interrupted")
        except Exception as err:  # noqa: BLE001 - our bug, but the session (and its state) goes on
            self.say(f"internal error: {type(err).__name__}: {err} (please report it)")
        return True

    def run_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            if not self.handle(line):
                break

    def _expr(self, args: list[str]) -> Expr:
        if args:
            self.show(" ".join(args), quiet=True)
        if self.current is None:
            raise ExprSearchError("no expression yet: type one, or give it after the command")
        return self.current

    def _ints(self, args: list[str], defaults: list[D], most: int = MAX_SIZE) -> list[int | D]:
        """Whole numbers from 1 to ``most`` (sizes, steps, counts), then the defaults of the rest."""
        try:
            vals = [int(a) for a in args]
        except ValueError:
            raise ExprSearchError(f"expected numbers, got {' '.join(args)}") from None
        bad = [v for v in vals if not 1 <= v <= most]
        if bad:
            raise ExprSearchError(f"{bad[0]} is out of range: numbers here are 1 to {most:,}")
        return vals + defaults[len(vals):]

    # -- typing an expression ------------------------------------------------------------------
    def show(self, text: str, quiet: bool = False) -> None:
        e = parse(text, validate=False)
        try:
            validate(e)
            valid = "yes (strict)"
        except ValidityError as strict_err:
            try:
                validate(e, strict=False)
                valid = f"relaxed only -- strict rule {strict_err.rule}: {strict_err.message}"
            except ValidityError as err:
                valid = f"no -- {err.rule}: {err.message}"
        self.current = e
        r = self.dedup.add(e)
        self.members.setdefault(r.key, [])
        if str(e) not in self.members[r.key]:
            self.members[r.key].append(str(e))
        if not quiet:
            self.say(f"canonical  {canonicalize(e)}")
            self.say(f"valid      {valid}   size {e.size}, depth {e.depth}")

    # -- commands -------------------------------------------------------------------------------
    def cmd_help(self, args: list[str]) -> None:
        self.say("type an FFN expression, e.g. linear1_1(gelu(linear1_1(x,wb1)),wb2), or a command:")
        for c, h in COMMANDS.items():
            self.say(f"  {c:7} {h}")
        self.say("weight slots (a linear's second argument):")
        for o in ops_of(Kind.SLOT):
            self.say(f"  {o.name:7} {o.doc}" + ("" if o.reference else "  [extension]"))
        self.say(f"a gated FFN (extension), e.g. GEGLU: {GEGLU_EXAMPLE}")

    def cmd_ast(self, args: list[str]) -> None:
        self.say(ast_tree(self._expr(args)))

    def cmd_canon(self, args: list[str]) -> None:
        e = self._expr(args)
        key = self.dedup.lookup(e) or str(canonicalize(e))
        group = self.members.get(key, [])
        self.say(f"canonical  {canonicalize(e)}")
        self.say(f"class      {key}  ({len(group)} expression(s) typed in this session)")
        for m in group:
            self.say(f"   = {m}")

    def cmd_sympy(self, args: list[str]) -> None:
        from exprsearch.lang.symbolic import PROOF_SECONDS, simplified
        algebra = simplified(canonicalize(self._expr(args)))
        if algebra is None:
            raise ExprSearchError(f"too large for sympy: building its algebra took over {PROOF_SECONDS:g} s")
        self.say(str(algebra))

    def cmd_dag(self, args: list[str]) -> None:
        s = dag_stats(to_dag(self._expr(args)))
        self.say(f"nodes {s['nodes']}, edges {s['edges']}, depth {s['depth']}, shared {s['shared']}, "
                 f"ops {', '.join(s['ops'])}")

    def _ffn_cfg(self, args: list[str]) -> Any:
        from exprsearch.compiler import FFNConfig
        h, d = self._ints(args[:2], [self.hidden, self.base])
        return FFNConfig(hidden=h or self.hidden, base_width=d)

    def cmd_fx(self, args: list[str]) -> None:
        from exprsearch.compiler import lower
        self.say(lower(self._expr([]), self._ffn_cfg(args)).code.strip())

    def cmd_cost(self, args: list[str]) -> None:
        from exprsearch.compiler import ffn_cost
        cfg = self._ffn_cfg(args)
        seq = self._ints(args[2:3], [self.seq])[0]
        c = ffn_cost(self._expr([]), cfg)
        self.say(f"H {cfg.hidden}, D {cfg.D}, L {seq}: params {c.params:,}, FLOPs/token {c.flops_per_token:,.0f} "
                 f"(matmul {c.mm_flops_per_token:,.0f}), activations {c.act_bytes_per_token:,.0f} B/token "
                 f"= {c.act_bytes_per_token * seq / 1e6:.2f} MB per sequence (bf16)")

    def cmd_bench(self, args: list[str]) -> None:
        import torch

        from exprsearch.compiler import lower
        from exprsearch.compiler.timing import StandardFFN, time_call
        cfg = self._ffn_cfg(args)
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        x = torch.randn(8 if dev.type == "cpu" else 32, 64 if dev.type == "cpu" else 128, cfg.hidden, device=dev)
        mine, ref = lower(self._expr([]), cfg).to(dev).eval(), StandardFFN(cfg.hidden, cfg.D).to(dev).eval()
        t1, t2 = time_call(lambda: mine(x), dev, iters=5), time_call(lambda: ref(x), dev, iters=5)
        self.say(f"{dev}: {t1 * 1e3:.3f} ms vs standard FFN {t2 * 1e3:.3f} ms ({t1 / t2:.2f}x), input {tuple(x.shape)}")

    def cmd_plot(self, args: list[str]) -> None:
        from exprsearch.search.plots import plot_nonlinearity
        path = plot_nonlinearity(self._expr([]), args[0] if args else "repl-plot.png")
        self.say(f"wrote {path}")

    def cmd_eval(self, args: list[str]) -> None:
        from exprsearch.kd.evaluate import EvalConfig, Evaluator
        from exprsearch.search.presets import EVAL_PRESETS as PRESETS
        exit_arg = next((a for a in args if a.startswith("exit=")), None)
        args = [a for a in args if a is not exit_arg]
        if not args:
            raise ExprSearchError("usage: :eval TASK [STEPS] [exit=POLICY[:VALUE]]")
        steps = self._ints(args[1:2], [PRESETS["cpu"]["steps"]], most=10**6)[0]
        cfg = EvalConfig(**{**PRESETS["cpu"], "tasks": (args[0],), "steps": steps})
        if exit_arg is not None:
            return self._eval_exits(cfg, exit_arg[5:])
        r = Evaluator(cfg, log=lambda m: self.say(f"  {m}")).evaluate(ModelSpec((self._expr([]),)), report_dev=True)
        self.say(f"{r.status} {r.reason} score {r.score} metrics {r.metrics} params {r.params:,} in {r.seconds:.1f}s")

    def _eval_exits(self, cfg: EvalConfig, text: str) -> None:
        from exprsearch.kd.exits import ExitConfig, run_exits
        policy, _, value = text.partition(":")
        field = {"patience": "patience"}.get(policy, "threshold")
        try:
            setting: dict[str, Any] = {field: (int if field == "patience" else float)(value)} if value else {}
            xcfg = ExitConfig(policy=policy, exit_steps=max(10, cfg.steps), gate_steps=max(10, cfg.steps), timing_rows=32,
                              **setting)
        except ValueError:
            raise ExprSearchError(f"exit={text}: the value after ':' must be a number") from None
        out = run_exits(ModelSpec((self._expr([]),)), cfg.tasks[0], cfg, xcfg, log=lambda m: self.say(f"  {m}"))
        pick = out["chosen"][policy]
        self.say(f"static {out['layers']} layers: {out['static']}")
        self.say(f"{policy} {pick['setting']}: score {pick['score']:.2f}, {pick['avg_layers']:.2f} layers on average "
                 f"(x{pick['layer_ratio']:.2f} fewer)")

    def cmd_load(self, args: list[str]) -> None:
        from exprsearch.search.store import Store, default_store_path
        if not args:
            raise ExprSearchError("usage: :load RUN [STORE]  (RUN may be 'last')")
        store = Store(args[1] if len(args) > 1 else default_store_path(), readonly=True)
        run = resolve_run(store, args[0])
        self.run = (store, run)
        self.say(f"loaded run {run}: {store.count(run)} candidates")

    def cmd_top(self, args: list[str]) -> None:
        from exprsearch.search.leaderboard import leaderboard_table
        if self.run is None:
            raise ExprSearchError("no run loaded: :load RUN")
        store, run = self.run
        self.say(leaderboard_table(store.candidates(run), self._ints(args[:1], [10])[0] or 10))


# -- the interactive front end -------------------------------------------------------------------

def _prompt_session() -> Any:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.validation import ValidationError, Validator

    from exprsearch.rows.paths import cache_root

    class DSLValidator(Validator):
        def validate(self, document: Any) -> None:
            text = document.text.strip()
            if not text or text.startswith((":", "#")):
                return
            try:
                parse(text, validate=False)
            except DSLError as err:
                pos = err.span[0] if err.span else len(text)
                raise ValidationError(message=err.message, cursor_position=pos) from None

    words = list(OPS) + list(COMMANDS)
    return PromptSession(history=FileHistory(str(cache_root() / "repl_history")),
                         completer=WordCompleter(words, sentence=False, match_middle=False,
                                                 pattern=__import__("re").compile(r"[:\w]+")),
                         validator=DSLValidator(), validate_while_typing=False)


def main(stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    repl = Repl(out)
    interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
    if not interactive:
        repl.run_lines(stdin)
        return 0
    try:
        session = _prompt_session()
    except ImportError:
        session = None
    repl.say("exprsearch REPL -- type an FFN expression or :help (Ctrl-D to leave)")
    while True:
        try:
            line = session.prompt("ffn> ") if session else input("ffn> ")
        except EOFError:
            return 0
        except KeyboardInterrupt:
            continue
        if not repl.handle(line):
            return 0


