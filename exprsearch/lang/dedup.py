"""canonical AST --> equivalence class: deduplication that does not collide.

Input: expressions (any order).  Output: for each, its class key (the canonical string of the
first member seen) and how equivalence was established.  Invariants: two members of a class have
(1) identical canonical forms, or (2) equal fingerprints *and* agree on fresh numeric probes (64
points, two seeds, rtol 1e-9, enough values saturated in neither: ``saturation.py``) -- the
final test -- labelled 'sympy' where sympy also proves the identity; different fingerprints are
never merged, and a fingerprint match that the fresh probes reject stays a separate class (a
counted collision).  Saturated values (non-finite, or constant in x) decide nothing: such
expressions merge only by canonical form; nor does an expression sympy, asked, gives up on (too
large or too slow): it stays apart from the others.  Sympy works once per expression (its
expanded -- and with ``full_proofs`` simplified -- algebra is kept), not once per pair, and at
most ``sympy_seconds`` in all: past that budget the probes decide alone, as in the search.
The reference code's "string + rounded sum" key merges unequal expressions; this does not.

>>> from .validity import parse_one
>>> d = Deduper(full_proofs=True)
>>> d.add(parse_one("mul(x,add(x,tanh(x)))")).proof
'new'
>>> r = d.add(parse_one("add(mul(x,tanh(x)),square(x))"))
>>> r.is_new, r.proof, r.key
(False, 'sympy', 'mul(x,add(x,tanh(x)))')
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .canon import canonicalize
from .expr import Expr
from .numeric import default_probe, fingerprint, numerically_equal
from .symbolic import algebra, same_algebra

__all__ = ["Deduper", "DedupResult"]

_SKIPPED = object()  # sympy not asked: its budget is spent


@dataclass(frozen=True)
class DedupResult:
    key: str           # canonical string of the class representative: the candidate's identity
    canonical: Expr    # this expression's own canonical form
    is_new: bool       # first member of its class
    proof: str         # 'new' | 'identical' (same canonical form) | 'sympy' | 'numeric'


@dataclass
class Deduper:
    """Incremental dedup index."""

    base_ratio: float = 1.0
    use_sympy: bool = True        # label merges proved by sympy (expand); numeric probes decide
    full_proofs: bool = False     # also try sympy.simplify (slow: up to seconds per expression)
    sympy_seconds: float = 30.0   # sympy's time in all; past it the numeric probes decide alone
    sympy_spent: float = 0.0      # sympy's time so far
    _algebra: dict[Expr, Any] = field(default_factory=dict)  # expression -> its algebra (None: gave up)
    _by_canon: dict[Expr, str] = field(default_factory=dict)
    _by_fp: dict[str, list[tuple[Expr, str]]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    collisions: int = 0
    proofs: dict[str, int] = field(default_factory=lambda: {"new": 0, "identical": 0, "sympy": 0,
                                                            "numeric": 0})

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, e: Expr) -> bool:
        return self.lookup(e) is not None

    def lookup(self, e: Expr) -> str | None:
        """The class key of ``e`` if an equivalent expression was added, without adding it."""
        c = canonicalize(e)
        if c in self._by_canon:
            return self._by_canon[c]
        for rep, key in self._by_fp.get(fingerprint(c, default_probe(self.base_ratio)), ()):
            if self._equivalent(c, rep) is not None:
                return key
        return None

    def _equivalent(self, c: Expr, rep: Expr) -> str | None:
        """How ``c`` and ``rep`` (same fingerprint) are known equal, or None if they are not.
        Fresh numeric probes decide; sympy then labels the merge as proved where it can."""
        if not numerically_equal(c, rep, self.base_ratio):
            return None
        forms: list[Any] = [self._algebra_of(c), self._algebra_of(rep)] if self.use_sympy else [_SKIPPED]
        if _SKIPPED in forms:
            return "numeric"
        if None in forms:  # too large or too slow for sympy: merging would be a guess
            return None
        t0 = time.perf_counter()
        proved = same_algebra(*forms)
        self.sympy_spent += time.perf_counter() - t0
        return "sympy" if proved else "numeric"

    def _algebra_of(self, e: Expr) -> Any:
        """``e``'s algebra, built at most once (``_SKIPPED`` once the sympy budget is spent)."""
        if e in self._algebra:
            return self._algebra[e]
        if self.sympy_spent >= self.sympy_seconds:
            return _SKIPPED
        t0 = time.perf_counter()
        self._algebra[e] = form = algebra(e, simplify=self.full_proofs)
        self.sympy_spent += time.perf_counter() - t0
        return form

    def add(self, e: Expr) -> DedupResult:
        c = canonicalize(e)
        key = self._by_canon.get(c)
        if key is not None:
            return self._done(DedupResult(key, c, False, "identical"), str(c))
        fp = fingerprint(c, default_probe(self.base_ratio))
        bucket = self._by_fp.setdefault(fp, [])
        for rep, rep_key in bucket:
            proof = self._equivalent(c, rep)
            if proof is not None:
                self._by_canon[c] = rep_key
                return self._done(DedupResult(rep_key, c, False, proof), str(c))
        if bucket:
            self.collisions += 1
        key = str(c)
        bucket.append((c, key))
        self._by_canon[c] = key
        return self._done(DedupResult(key, c, True, "new"), key)

    def _done(self, r: DedupResult, member: str) -> DedupResult:
        group = self.members.setdefault(r.key, [])
        if member not in group:
            group.append(member)
        self.proofs[r.proof] += 1
        return r

    def groups(self) -> dict[str, list[str]]:
        """Class key -> distinct canonical forms found equivalent to it (the key first)."""
        return {k: list(v) for k, v in self.members.items()}
