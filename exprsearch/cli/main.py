"""command line --> library calls: the ``exprsearch`` entry point.

Each sub-command is a thin function over the library; modules register theirs in ``COMMANDS``.
Invariant: bad input never shows a traceback: an ``ExprSearchError`` prints one message and exits
2; an unexpected exception prints a one-line summary (``--debug`` shows the traceback) and exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from exprsearch import __version__
from exprsearch.errors import ExprSearchError

__all__ = ["main", "command", "COMMANDS", "emit"]

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str) -> Callable[[Callable[[argparse.ArgumentParser], None]],
                                              Callable[[Handler], Handler]]:
    """Register ``name``: decorate the options builder, then the handler:

    ``@command("x", "help")(options)(handler)`` is spelt as two decorators in the modules."""
    def with_options(options: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
        def with_handler(handler: Handler) -> Handler:
            COMMANDS[name] = (help, options, handler)
            return handler
        return with_handler
    return with_options


def emit(ns: argparse.Namespace, human: str, machine: Any) -> None:
    """Print ``machine`` as JSON with ``--json``, else the human text."""
    if getattr(ns, "json", False):
        print(json.dumps(machine, indent=2, default=str))
    else:
        print(human)


def _load_commands() -> None:
    from . import cmd_compile, cmd_distill, cmd_eval, cmd_exits, cmd_lang, cmd_search  # noqa: F401  (each registers)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the named command's options are built (building them all
    imports the whole library, seconds before ``exprsearch parse`` could answer)."""
    _load_commands()
    p = argparse.ArgumentParser(prog="exprsearch", description="Search Transformer FFNs written as "
                                "symbolic expressions (EfficientBERT).")
    p.add_argument("--version", action="version", version=f"exprsearch {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (help_, options, _) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        if wanted is None or wanted == name:
            options(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    from exprsearch import tune_gc
    tune_gc()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[ns.command][2](ns)
    except ExprSearchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - last line of defence: one message, no traceback
        if ns.debug:
            raise
        print(f"internal error: {type(err).__name__}: {err}\n(re-run with --debug for the traceback "
              f"and please report it)", file=sys.stderr)
        return 1

