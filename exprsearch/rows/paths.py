"""Where things live: the cache folder and the GLUE data folder.

``cache_root``: ``--cache-dir``, else ``$EXPRSEARCH_CACHE``, else ``~/.cache/exprsearch``.
``resolve_data_dir``: ``--data-dir``, else ``$EXPRSEARCH_GLUE_DIR``, else a ``shared/data/glue``
next to the working directory or the checkout, else the small slices bundled in the package.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from exprsearch.errors import ConfigError

__all__ = ["cache_root", "resolve_data_dir", "bundled_glue"]


def cache_root(arg: str | None = None) -> Path:
    p = Path(arg or os.environ.get("EXPRSEARCH_CACHE") or Path.home() / ".cache" / "exprsearch")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the cache folder {p}: {err}") from None
    return p


def bundled_glue() -> Path:
    return Path(str(resources.files("exprsearch").joinpath("data/glue")))


def resolve_data_dir(arg: str | None = None) -> Path:
    if arg:
        p = Path(arg)
        if not p.is_dir():
            raise ConfigError(f"--data-dir {p}: no such folder (it should hold one folder per GLUE task)")
        return p
    env = os.environ.get("EXPRSEARCH_GLUE_DIR")
    if env:
        return resolve_data_dir(env)
    here = Path(__file__).resolve().parents[2]  # the checkout
    for cand in (Path.cwd() / ".." / "shared" / "data" / "glue", Path.cwd() / "shared" / "data" / "glue",
                 here / ".." / "shared" / "data" / "glue", here / "shared" / "data" / "glue"):
        if cand.is_dir():
            return cand.resolve()
    return bundled_glue()
