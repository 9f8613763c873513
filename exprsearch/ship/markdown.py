"""user text --> text that a model card shows as written: Markdown and HTML escaped, YAML quoted.

Input: any string a user chose -- a task name, a label, a column or file name, a path.  Output:
the same characters as Markdown that renders them literally (no emphasis, links, tables or HTML:
a ``<script>`` stays text), or a YAML scalar (double-quoted JSON, which YAML reads as is).

>>> md("<script>alert(1)</script> *bold* | cell")
'&lt;script&gt;alert(1)&lt;/script&gt; \\\\*bold\\\\* \\\\| cell'
>>> yaml_str('say "hi": #1')
'"say \\\\"hi\\\\": #1"'
"""
from __future__ import annotations

import json
import re

__all__ = ["md", "yaml_str", "fence"]

_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what emphasises, links, quotes code or cuts a table cell mid-line


def md(text: object) -> str:
    """``text`` as Markdown that renders as the same characters (one line: newlines become spaces)."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", s)


def yaml_str(text: object) -> str:
    """``text`` as a YAML scalar (a JSON string: valid YAML, no anchors, tags or comments)."""
    return json.dumps(str(text), ensure_ascii=False)


def fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text`` (which can then never close it).

    >>> fence("a ``` b")
    '````'
    """
    return "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
