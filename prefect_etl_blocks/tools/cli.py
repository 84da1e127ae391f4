"""``prefect-etl``: the prefect-etl-blocks command line.

Commands:
    prefect-etl demo        generate sample data and run the ``daily-etl`` flow on embedded defaults
    prefect-etl new         scaffold a flow project from a shipped template
    prefect-etl templates   list the shipped templates
    prefect-etl register    register this package's block types with the configured Prefect API
    prefect-etl doctor      check the setup (API, blocks, serializer, limits, DuckDB, S3, SMTP)
    prefect-etl history     print the load history of a DuckDB file
    prefect-etl version     print versions of this package, Prefect, Polars and DuckDB

A user error (bad input, a missing file, an unreachable server, a refused answer) prints one
line on stderr, ``prefect-etl COMMAND: what, where, how to fix``, and exits 1; Ctrl-C exits 130.
Anything else is a bug and says so in one line. ``--debug`` adds the traceback.

Each command's work lives in the module it belongs to; this file only parses arguments and
reports errors, so ``prefect-etl --help`` stays fast (heavy modules are imported inside the
command).

Example:
    ```python
    from prefect_etl_blocks.tools.cli import main

    assert main(["templates"]) == 0
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from prefect_etl_blocks.core.errors import DataError

PROG = "prefect-etl"


class UsageError(DataError, ValueError):
    """A command-line argument that cannot be used (unknown option, bad ``key=value``...).

    ``where`` is the command it belongs to (``prefect-etl new``), when known.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


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
    from prefect_etl_blocks.blocks.duckdb import DuckDBConnection

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
    path = os.path.abspath(os.path.expanduser(chosen))
    if not os.path.isfile(path):
        raise UsageError(
            f"DuckDB file {path} does not exist; pass the database file your flows load into."
        )
    import polars as pl

    db = DuckDBConnection(database=path, read_only=True)
    history = db.load_history(table) if table else db.load_history()
    if history.is_empty():
        where = f" of table {table!r}" if table else ""
        print(f"{PROG} history: no loads{where} recorded in {path} yet.", file=sys.stderr)
    if args.json:
        print(json.dumps(history.to_dicts(), indent=2, default=_json_value))
    elif args.wide:
        # Every column, and load ids in full: the ledger is read to find one load.
        with pl.Config(tbl_cols=-1, tbl_rows=-1, fmt_str_lengths=48, tbl_width_chars=400):
            print(history)
    else:
        width = shutil.get_terminal_size((HISTORY_WIDTH, 24)).columns
        for line in history_lines(history, width):
            print(line)
    return 0


#: Columns of a terminal that ``history`` fits when it cannot ask the terminal.
HISTORY_WIDTH = 100


def _json_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def history_lines(history: Any, width: int = HISTORY_WIDTH) -> list[str]:
    """The load ledger as a table that fits ``width`` columns: finish time (UTC, to the
    minute), the first 8 characters of the load id, table, strategy, rows inserted, updated and
    deleted, and whether the load created the table (``new``). A long table name is shortened
    in the middle first, then the columns that matter least are left out (load id, deleted,
    updated, new, time); no line is wider than ``width``. ``history --wide`` and ``--json``
    show every column in full.

    Example:
        ```python
        import polars as pl
        from prefect_etl_blocks import DuckDBConnection
        from prefect_etl_blocks.tools.cli import history_lines

        db = DuckDBConnection()
        db.load_frame(pl.DataFrame({"id": [1, 2]}), "analytics.orders")
        lines = history_lines(db.load_history(), width=60)
        assert max(len(line) for line in lines) <= 60
        assert "analytics.orders" in lines[1] and lines[1].rstrip().endswith("yes")
        ```
    """
    headers = ["finished (UTC)", "load", "table", "strategy", "inserted", "updated", "deleted", "new"]
    rows = []
    for r in history.iter_rows(named=True):
        finished = r.get("finished_at") or r.get("started_at")
        strategy = str(r["strategy"]) + (f" ({r['incremental']})" if r.get("incremental") else "")
        rows.append([
            finished.strftime("%Y-%m-%d %H:%M") if finished is not None else "",
            str(r["load_id"])[:8], str(r["table_name"]), strategy,
            f"{r['inserted'] or 0:,}", f"{r['updated'] or 0:,}", f"{r['deleted'] or 0:,}",
            "yes" if r.get("created") else "no",
        ])
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    keep = list(range(len(headers)))
    for drop in (None, 1, 6, 5, 7, 0):  # left out, in turn, while the table name gets < 12
        if drop is not None:
            keep.remove(drop)
        room = width - sum(widths[i] + 2 for i in keep if i != 2)
        if room >= min(12, widths[2]):
            break
    widths[2] = max(min(widths[2], room), min(12, widths[2]))
    headers = [headers[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    widths = [widths[i] for i in keep]
    right = {n for n, i in enumerate(keep) if i in (4, 5, 6)}

    def fit(text: str) -> str:
        return text if len(text) <= width else text[: max(width - 1, 0)] + "…"

    def line(cells: list[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if len(cell) > widths[i]:  # keep both ends of a name: analytics.dai…_summary
                head = (widths[i] - 1) // 2
                cell = cell[:head] + "…" + cell[len(cell) - (widths[i] - 1 - head):]
            out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return fit("  ".join(out).rstrip())

    lines = [line(headers), *(line(row) for row in rows)]
    if rows:
        lines.append(fit(f"{len(rows)} load(s), oldest first; --wide or --json: every column in full"))
    return lines


def _cmd_version(args: argparse.Namespace) -> int:
    import duckdb
    import polars
    import prefect

    import prefect_etl_blocks

    print(f"prefect-etl-blocks {prefect_etl_blocks.__version__}")
    print(f"prefect {prefect.__version__}")
    print(f"polars {polars.__version__}")
    print(f"duckdb {duckdb.__version__}")
    return 0


# ----------------------------------------------------------------------------- next steps


def library_install_argument() -> str | None:
    """What ``pip install`` needs to install this library from where it came, or ``None``
    when it came from a package index (a generated project's own install then pulls it in).

    Reads the installed distribution's ``direct_url.json`` (PEP 610), see
    :func:`install_argument_from_direct_url`. A package imported from a source tree that is not
    installed at all gives that tree.
    """
    from importlib import metadata

    import prefect_etl_blocks

    try:
        dist = metadata.distribution("prefect-etl-blocks")
    except metadata.PackageNotFoundError:
        root = Path(prefect_etl_blocks.__file__).resolve().parent.parent
        return shlex.quote(str(root)) if (root / "pyproject.toml").is_file() else None
    raw = dist.read_text("direct_url.json")
    try:
        info = json.loads(raw) if raw else None
    except ValueError:
        info = None
    return install_argument_from_direct_url(info)


def install_argument_from_direct_url(info: dict[str, Any] | None) -> str | None:
    """The ``pip install`` argument for a PEP 610 ``direct_url.json`` (``None``: an index).

    Example:
        ```python
        from prefect_etl_blocks.tools.cli import install_argument_from_direct_url

        editable = {"url": "file:///src/prefect-etl-blocks", "dir_info": {"editable": True}}
        assert install_argument_from_direct_url(editable) == "-e /src/prefect-etl-blocks"
        wheel = {"url": "file:///tmp/w/prefect_etl_blocks-0.1.0-py3-none-any.whl",
                 "archive_info": {}}
        assert install_argument_from_direct_url(wheel) == wheel["url"][7:]
        assert install_argument_from_direct_url(None) is None
        ```
    """
    from urllib.parse import unquote, urlparse

    if not info or not info.get("url"):
        return None
    url = str(info["url"])
    if isinstance(info.get("vcs_info"), dict):
        vcs = info["vcs_info"]
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        return shlex.quote(f"{vcs.get('vcs', 'git')}+{url}" + (f"@{commit}" if commit else ""))
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return shlex.quote(url)
    path = shlex.quote(unquote(parsed.path))
    if (info.get("dir_info") or {}).get("editable"):
        return f"-e {path}"
    return path


def next_steps(project: Path) -> list[str]:
    """The lines ``new`` prints after success: where the project is and the exact commands."""
    project = project.resolve()
    try:
        shown = f"./{project.relative_to(Path.cwd().resolve())}"
    except ValueError:
        shown = str(project)
    answers: dict[str, Any] = {}
    try:
        answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    module = answers.get("module_name")
    lines = [f"Created {shown}", "", "Next steps:"]
    library = library_install_argument()
    if library:
        lines.append(
            f"  python -m pip install {library}"
            "   # prefect-etl-blocks from where it was installed (not on a package index)"
        )
    lines.append(f"  python -m pip install -e {shlex.quote(shown + '[dev]')}")
    lines.append(f"  cd {shlex.quote(shown)}")
    if isinstance(module, str) and module:
        if (project / module / "sample_data.py").is_file():
            lines.append(f"  python -m {module}.sample_data")
        if (project / module / "setup_limits.py").is_file():
            lines.append(f"  python -m {module}.setup_limits   # needs PREFECT_API_URL")
        if (project / module / "flow.py").is_file():
            lines.append(f"  python -m {module}.flow")
    if (project / "tests").is_dir():
        lines.append("  python -m pytest")
    return lines


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

    version = command("version", "Print versions.")
    version.set_defaults(func=_cmd_version)
    return parser


# ----------------------------------------------------------------------------- errors


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug."""
    from prefect_etl_blocks.core.errors import PrefectETLBlocksError

    try:
        from cookiecutter import exceptions as cc
    except ImportError:  # templates not installed: no cookiecutter errors to expect
        cc = None
    if cc is not None:
        if isinstance(exc, cc.OutputDirExistsException):
            found = re.search(r'"(.*)" directory already exists', str(exc))
            folder = found.group(1) if found else "the project folder"
            return (
                f"{folder} already exists; pass --overwrite to write the project into it "
                "(files the template does not produce are kept), or choose another "
                "project_slug=... or --output-dir."
            )
        if isinstance(exc, cc.FailedHookException):
            return f"a template hook failed ({exc}); nothing was created. See the line above."
        if isinstance(exc, cc.RepositoryNotFound):
            return f"template not found ({exc}); see `{PROG} templates`."
    if isinstance(exc, PrefectETLBlocksError):
        return str(exc)
    try:
        from prefect_etl_blocks.tools.scaffold import AnswerError
    except ImportError:  # pragma: no cover - the templates' dependencies are missing
        AnswerError = None  # noqa: N806
    if AnswerError is not None and isinstance(exc, AnswerError):
        return str(exc)
    if isinstance(exc, ValueError) and (_raised_by_us(exc) or _is_validation_error(exc)):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return None


def _raised_by_us(exc: BaseException) -> bool:
    """``True`` when the innermost frame that raised ``exc`` is in this package."""
    package = str(Path(__file__).resolve().parent.parent)  # the package folder, not tools/
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and str(Path(last.tb_frame.f_code.co_filename).resolve()).startswith(
        package
    )


def _is_validation_error(exc: BaseException) -> bool:
    """pydantic's ``ValidationError``: a block field given a value it refuses."""
    return type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic")


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
        message = _user_error(exc)
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
