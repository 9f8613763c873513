"""canonical AST --> equivalence class: deduplication that does not collide.

Input: expressions (any order).  Output: for each, its class key (the canonical string of the
first member seen) and how equivalence was established.  Invariants: two members of a class have
(1) identical canonical forms, or (2) equal fingerprints *and* agree on fresh numeric probes (64
points, two seeds, rtol 1e-9) -- the final test -- labelled 'sympy' where sympy also proves the
identity; different fingerprints are never merged, and a fingerprint match that the fresh probes
reject stays a separate class (a counted collision).  Saturated values (non-finite, or constant
in x) decide nothing: such expressions merge only by canonical form; nor does a pair on which
sympy, asked, gives up (too large or too slow): it stays two classes.
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

from dataclasses import dataclass, field

from .canon import canonicalize
from .expr import Expr
from .numeric import default_probe, fingerprint, numerically_equal
from .symbolic import prove_equal

__all__ = ["Deduper", "DedupResult"]


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
    full_proofs: bool = False     # also try sympy.simplify (slow: up to seconds per pair)
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
        proved = prove_equal(c, rep, simplify=self.full_proofs) if self.use_sympy else False
        if proved is None:  # too large or too slow for sympy: merging would be a guess
            return None
        return "sympy" if proved else "numeric"

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
