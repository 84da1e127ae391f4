"""``prefect-etl``: the prefect-etl-blocks command line.

Commands:
    prefect-etl demo        generate sample data and run the ``daily-etl`` flow on embedded defaults
    prefect-etl new         scaffold a flow project from a shipped template
    prefect-etl templates   list the shipped templates
    prefect-etl check       exit 1 when a generated project is behind its template, and say what changed
    prefect-etl update      merge the template's changes into a generated project (three-way, edits kept)
    prefect-etl register    register this package's block types with the configured Prefect API
    prefect-etl doctor      check the setup (API, blocks, serializer, limits, DuckDB, S3, SMTP)
    prefect-etl history     print the load history of a DuckDB file
    prefect-etl rollback    put a DuckLake table back as it was just before one load
    prefect-etl version     print versions of this package, Prefect, Polars and DuckDB

A user error (bad input, a missing file, an unreachable server, a refused answer) prints one
line on stderr, ``prefect-etl COMMAND: what, where, how to fix``, and exits 1; Ctrl-C exits 130.
Anything else is a bug and says so in one line. ``--debug`` adds the traceback.

Each command's work lives in the module it belongs to, imported inside the command, so
``prefect-etl --help`` and ``prefect-etl version`` import neither Prefect nor Polars nor DuckDB.
This file parses arguments and dispatches; :mod:`~prefect_etl_blocks.tools.cli_errors` words the
errors, :mod:`~prefect_etl_blocks.tools.cli_history` prints ``history`` and
:mod:`~prefect_etl_blocks.tools.cli_next_steps` the lines after ``new``.

Example:
    ```python
    from prefect_etl_blocks.tools.cli import main

    assert main(["templates"]) == 0
    ```
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from prefect_etl_blocks.tools.cli_errors import PROG, UsageError, user_error
from prefect_etl_blocks.tools.cli_history import HISTORY_WIDTH, history_lines, print_history
from prefect_etl_blocks.tools.cli_next_steps import (
    install_argument_from_direct_url,
    library_install_argument,
    next_steps,
)

__all__ = [
    "HISTORY_WIDTH", "PROG", "UsageError", "build_parser", "history_lines",
    "install_argument_from_direct_url", "library_install_argument", "main", "next_steps",
]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line :class:`UsageError` instead of usage + exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`.", where=self.prog)


# ----------------------------------------------------------------------------- commands


def _parse_key_values(pairs: Sequence[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"{pair!r} is not a key=value answer; write for example "
                "project_name='Sales ETL' (see `prefect-etl new --help`)."
            )
        context[key.strip()] = value
    return context


def _cmd_demo(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.demo import run_demo

    run_demo(workdir=args.workdir, rows=args.rows, files=args.files, regenerate=args.regenerate)
    return 0


def _is_terminal(stream: Any) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


def _interruptible_questions() -> None:
    """Make Ctrl-C interrupt a question that waits in ``input()``.

    Polars hooks SIGINT from a background thread soon after it is imported, with
    ``SA_RESTART``, so a plain blocking read of the terminal is resumed after Ctrl-C and the
    question ignores it until Enter. With ``readline`` loaded, ``input()`` waits in ``select()``,
    which a signal always interrupts, so Ctrl-C raises ``KeyboardInterrupt`` at once (and the
    answers get line editing).
    """
    try:
        import readline  # noqa: F401
    except ImportError:  # pragma: no cover - no GNU readline (Windows): nothing to do
        pass


def _cmd_new(args: argparse.Namespace) -> int:
    context = _parse_key_values(args.context)
    no_input = args.no_input
    if not no_input and not _is_terminal(sys.stdin):
        # Prompts would die with EOFError in CI or a pipe; defaults + given answers are what
        # such callers want, and they are told so.
        print(
            f"{PROG} new: no terminal on stdin, so no questions are asked: using the template's "
            "defaults and the key=value answers given (as with --no-input).",
            file=sys.stderr,
        )
        no_input = True
    if not no_input:
        _interruptible_questions()
    from prefect_etl_blocks.tools.scaffold import new_project

    path = new_project(
        args.template,
        output_dir=args.output_dir,
        no_input=no_input,
        extra_context=context,
        overwrite_if_exists=args.overwrite,
    )
    for line in next_steps(Path(path)):
        print(line)
    return 0


def _cmd_templates(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.scaffold import list_templates

    for name, description in list_templates().items():
        print(f"{name:20} {description}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.cli_template import check_lines
    from prefect_etl_blocks.tools.template_update import check_project

    status = check_project(args.project, template=args.template)
    for line in check_lines(status):
        print(line)
    return 1 if status.behind or status.unresolved else 0


def _cmd_update(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.cli_template import update_lines
    from prefect_etl_blocks.tools.template_update import update_project

    result = update_project(args.project, template=args.template, dry_run=args.dry_run)
    for line in update_lines(result):
        print(line)
    if result.conflicts:
        print(
            f"{PROG} update: {len(result.conflicts)} conflict(s), both sides kept between <<<<<<< and "
            f">>>>>>> in: {', '.join(result.conflicts)}; edit them, then run `{PROG} check`.",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.registration import register_blocks

    return register_blocks(timeout_seconds=args.timeout)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.doctor import run_doctor

    return run_doctor(
        limits=args.limit,
        database=_chosen_database(args, "doctor"),
        result_storage=args.result_storage,
        notifier=args.notifier,
        timeout_seconds=args.timeout,
    )


def _chosen_database(args: argparse.Namespace, command: str) -> str | None:
    """The database of ``doctor`` and ``history``: ``--database PATH`` or the positional ``DB``
    (the same file given both ways is fine; two different files are refused)."""
    given, option = getattr(args, "db", None), getattr(args, "database", None)
    if given and option and os.path.abspath(given) != os.path.abspath(option):
        raise UsageError(
            f"two databases given ({given} and --database {option}); pass one, as "
            f"`{PROG} {command} --database PATH` or `{PROG} {command} PATH`.",
            where=f"{PROG} {command}",
        )
    return option or given


def _cmd_history(args: argparse.Namespace) -> int:
    if args.database and args.db and args.table is None and args.table_option is None:
        # `history --database FILE TABLE`: with the file given by name, the one positional is
        # the table.
        args.db, args.table = None, args.db
    table = args.table_option or args.table
    if args.table_option and args.table and args.table_option != args.table:
        raise UsageError(
            f"two tables given ({args.table} and --table {args.table_option}); pass one.",
            where=f"{PROG} history",
        )
    chosen = _chosen_database(args, "history")
    if chosen is None:
        from prefect_etl_blocks.tools.doctor import discover_project

        chosen = discover_project(".").database
    if chosen is None:
        raise UsageError(
            "which DuckDB file? Pass --database PATH (or `prefect-etl history PATH [TABLE]`), "
            "or run it in a generated project, whose duckdb_path is the default.",
            where=f"{PROG} history",
        )
    return print_history(chosen, table, as_json=args.json, wide=args.wide)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.tools.cli_rollback import run_rollback

    return run_rollback(args.block, args.table, args.load_id, force=args.force)


def _installed_version(name: str, module: str | None = None) -> str:
    """The installed version of ``name`` from its distribution's metadata, without importing it
    (importing Prefect alone takes about a second); the module's ``__version__`` only when no
    distribution of that name is installed (a build such as ``polars-lts-cpu``)."""
    from importlib import import_module, metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return str(getattr(import_module(module or name), "__version__", "unknown"))


def _cmd_version(args: argparse.Namespace) -> int:
    ours = _installed_version("prefect-etl-blocks", module="prefect_etl_blocks")
    print(f"prefect-etl-blocks {ours}")
    for name in ("prefect", "polars", "duckdb"):
        print(f"{name} {_installed_version(name)}")
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``prefect-etl`` argument parser."""
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="Show the traceback of an error.",
    )
    parser = _Parser(
        prog=PROG,
        description="prefect-etl-blocks: Prefect blocks for DuckDB + Polars pipelines.",
        epilog="Errors print one line (what, where, how to fix) and exit 1; --debug adds the "
        "traceback.",
        parents=[debug],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[debug])

    demo = command("demo", "Generate sample sales data and run the daily-etl flow.")
    demo.add_argument("--workdir", default=".prefect-etl/demo", help="Folder for data and DuckDB file.")
    demo.add_argument("--rows", type=int, default=1_200_000, help="Rows of sample data.")
    demo.add_argument("--files", type=int, default=6, help="Number of Parquet files.")
    demo.add_argument("--regenerate", action="store_true", help="Rewrite the sample data.")
    demo.set_defaults(func=_cmd_demo)

    new = command("new", "Scaffold a flow project from a shipped template.")
    new.add_argument("template", help=f"Template name, see `{PROG} templates`.")
    new.add_argument("--output-dir", default=".", help="Where to create the project.")
    new.add_argument(
        "--no-input", action="store_true",
        help="Use defaults and the key=value answers; ask nothing (automatic without a terminal).",
    )
    new.add_argument(
        "--overwrite", action="store_true", help="Write into an existing project folder."
    )
    new.add_argument(
        "context", nargs="*", metavar="key=value", help="Answers to template questions."
    )
    new.set_defaults(func=_cmd_new)

    templates = command("templates", "List the shipped templates.")
    templates.set_defaults(func=_cmd_templates)

    for name, help_text in (
        ("check", "Exit 1 when this generated project is behind its template, and say what changed."),
        ("update", "Merge the template's changes into this generated project; your edits stay."),
    ):
        kept = command(name, help_text)
        kept.add_argument("--template", metavar="PATH", help="A templates/ folder or a template folder "
                          "(default: the template installed with prefect-etl-blocks).")
        kept.add_argument("--project", default=".", metavar="PATH", help="The generated project (default: here).")
        if name == "update":
            kept.add_argument("--dry-run", action="store_true", help="Show the diff; change nothing.")
        kept.set_defaults(func=_cmd_update if name == "update" else _cmd_check)

    register = command("register", "Register the block types with the Prefect API.")
    register.add_argument(
        "--timeout", type=float, default=15.0, help="Seconds to wait for the API."
    )
    register.set_defaults(func=_cmd_register)

    doctor = command("doctor", "Check the setup and say how to fix each failure.")
    doctor.add_argument(
        "--limit", action="append", default=[], metavar="NAME",
        help="A global concurrency limit that must exist (repeatable); default: "
        "<project_slug>-duckdb-writes of the project in the current folder.",
    )
    doctor.add_argument(
        "db", metavar="DB", nargs="?",
        help="DuckDB file that must be writable (the same as --database).",
    )
    doctor.add_argument(
        "--database", metavar="PATH",
        help="DuckDB file that must be writable; default: the project's duckdb_path.",
    )
    doctor.add_argument(
        "--result-storage", metavar="BLOCK_NAME", help="Saved S3 Result Storage block to reach."
    )
    doctor.add_argument(
        "--notifier", metavar="BLOCK_NAME",
        help="Saved Email Notifier block to connect with (nothing is sent).",
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, help="Seconds each network check may take."
    )
    doctor.set_defaults(func=_cmd_doctor)

    history = command("history", "Print the load history recorded in a DuckDB file.")
    history.add_argument(
        "db", metavar="DB", nargs="?", help="The DuckDB file (the same as --database)."
    )
    history.add_argument("table", metavar="TABLE", nargs="?", help="Only loads into this table.")
    history.add_argument(
        "--database", metavar="PATH",
        help="The DuckDB file; default: the project's duckdb_path.",
    )
    history.add_argument(
        "--table", dest="table_option", metavar="TABLE", help="Only loads into this table."
    )
    shown = history.add_mutually_exclusive_group()
    shown.add_argument(
        "--wide", action="store_true",
        help="Every column, load ids in full (default: what fits the terminal).",
    )
    shown.add_argument("--json", action="store_true", help="Every column, as a JSON array.")
    history.set_defaults(func=_cmd_history)

    rollback = command(
        "rollback", "Put a table of a saved DuckLake block back as it was just before one load."
    )
    rollback.add_argument(
        "--block", required=True, metavar="NAME",
        help="The saved DuckLake Connection block (NAME or ducklake-connection/NAME).",
    )
    rollback.add_argument("table", metavar="TABLE", help="The table to put back, e.g. sales.orders.")
    rollback.add_argument("load_id", metavar="LOAD_ID", help="The load to undo (a load_id of its history).")
    rollback.add_argument(
        "--force", action="store_true",
        help="Also discard later changes to the table (refused without it).",
    )
    rollback.set_defaults(func=_cmd_rollback)

    version = command("version", "Print versions.")
    version.set_defaults(func=_cmd_version)
    return parser


# ----------------------------------------------------------------------------- errors


def _say(command: str | None, message: str, where: str | None = None) -> None:
    where = where or (f"{PROG} {command}" if command else PROG)
    text = " ".join(message.split())
    if text.startswith(f"{where}:"):
        text = text[len(where) + 1 :].lstrip()
    print(f"{where}: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prefect-etl`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Read before parsing, so an error while parsing honours it too.
    debug = "--debug" in argv
    command: str | None = None
    try:
        parser = build_parser()
        # key=value answers may follow options (`prefect-etl new etl-flow --no-input retries=5`).
        args, extra = parser.parse_known_args(argv)
        command = getattr(args, "command", None)
        if extra:
            if command != "new" or any(a.startswith("-") for a in extra):
                where = f"{PROG} {command}" if command else PROG
                raise UsageError(f"unrecognized arguments: {' '.join(extra)}; see `{where} --help`.")
            args.context = [*args.context, *extra]
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`prefect-etl history --wide | head`): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        if _is_terminal(sys.stderr):  # end the line the terminal echoed ^C on
            print(file=sys.stderr)
        _say(command, "interrupted (Ctrl-C); stopped before finishing.")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        message = user_error(exc)
        if message is None:
            hint = "" if debug else "; run it again with --debug for the traceback"
            message = (
                f"unexpected error {type(exc).__name__}: {str(exc).rstrip('.')}. This is a bug in "
                f"prefect-etl-blocks{hint} and report it."
            )
        _say(command, message, getattr(exc, "where", None) if isinstance(exc, UsageError) else None)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
