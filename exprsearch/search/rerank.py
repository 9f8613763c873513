"""a stage's leaderboard --> its top candidates re-scored over more training seeds.

Input: a ``Search`` whose stage just finished.  Output: stored re-evaluations (``Store.add_reseed``)
of the run's ``rerank`` best candidates with ``rerank_seeds`` more training seeds each (the
protocol's seed + 1, + 2, ...; same teachers and warm supernets); the store then reports those rows'
scores as means over their seeds.  Why: one proxy score carries ~0.5 points of seed noise, so the
best of a few hundred near-equal candidates is mostly the luckiest draw (BENCHMARKS.md, "Search":
a +0.9 proxy lead that vanished under re-training).  Invariants: after a re-rank the run's top
``rerank`` rows all have every extra seed (rows that climb in are re-scored too, a few rounds at
most), and so does the standard FFN's row if the run has one (the leaderboard's "best - standard"
then compares means); each re-evaluation is committed as it arrives, so a resumed run
re-evaluates nothing; a failed one is logged and left out of the mean; stage-3 rows (supernet
scores) are never re-scored.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .leaderboard import standard_row

if TYPE_CHECKING:
    from .search import Search
    from .store import Store

__all__ = ["rerank"]


def _ranked(store: Store, run: str) -> list[dict[str, Any]]:
    """The run's successful per-candidate rows (no stage-3 supernet scores), best mean first."""
    return sorted((r for r in store.candidates(run, status="ok") if "@" not in r["key"]), key=lambda r: -r["score"])


def rerank(search: "Search", rounds: int = 4) -> int:
    """Re-score the top ``search.scfg.rerank`` candidates with ``rerank_seeds`` more seeds;
    returns how many evaluations it ran."""
    n, extra = search.scfg.rerank, search.scfg.rerank_seeds
    if n <= 0 or extra <= 0:
        return 0
    store, run = search.store, search.run_id
    seeds = [search.ecfg.seed + k for k in range(1, extra + 1)]
    ran = 0
    for _ in range(rounds):
        rows = _ranked(store, run)
        top = rows[:n]
        top += [r for r in rows if standard_row(r) and r not in top][:1]  # "best - standard" compares means
        done = store.reseeds(run)
        todo = {s: [(r["key"], search.spec_of(r)) for r in top if s not in done.get(r["key"], {})] for s in seeds}
        if not any(todo.values()):
            break
        backend = search.backend()
        for seed, batch in todo.items():
            if batch:
                def reseeded(key: str, r: dict[str, Any], s: int = seed) -> None:
                    store.add_reseed(run, key, s, r)

                backend.run(batch, on_result=reseeded, seed=seed)
                ran += len(batch)
    search.stats["reseeded"] += ran
    rows, done = _ranked(store, run), store.reseeds(run)
    if ran and rows:
        best = rows[0]
        spread = f" ± {best['seed_std']:.2f} (seed std)" if "seed_std" in best else " (one seed)"
        search.log(f"re-ranked the top {n} over {1 + extra} seeds ({ran} evaluations): "
                   f"best {best['score']:.2f}{spread}")
    failed = sum(m["status"] != "ok" for by_seed in done.values() for m in by_seed.values())
    short = sum(len(done.get(r["key"], {})) < extra for r in rows[:n])
    if failed or short:
        search.log(f"re-rank: {failed} re-evaluation(s) failed or were stopped (not counted in the means)"
                   + (f"; {short} of the top {n} still have fewer than {extra} extra seeds after {rounds} rounds"
                      if short else ""))
    return ran
