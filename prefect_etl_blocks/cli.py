"""``petl``: the prefect-etl-blocks command line.

Commands:
    petl demo        generate sample data and run the ``daily-etl`` flow on embedded defaults
    petl new         scaffold a flow project from a shipped cookiecutter template
    petl templates   list the shipped templates
    petl register    register this package's block types with the configured Prefect API
    petl version     print versions of this package, Prefect, Polars and DuckDB

Each command's work lives in the module it belongs to; this file only parses arguments, so
``petl --help`` stays fast (heavy modules are imported inside the command).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parse_key_values(pairs: Sequence[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(
                f"petl new: {pair!r} is not a key=value pair; write for example "
                "project_name='Sales ETL'."
            )
        context[key.strip()] = value
    return context


def _cmd_demo(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.demo import run_demo

    run_demo(
        workdir=args.workdir,
        rows=args.rows,
        files=args.files,
        regenerate=args.regenerate,
    )
    return 0


def _cmd_new(args: argparse.Namespace) -> int:
    context = _parse_key_values(args.context)
    from prefect_etl_blocks.scaffold import new_project

    path = new_project(
        args.template,
        output_dir=args.output_dir,
        no_input=args.no_input,
        extra_context=context,
        overwrite_if_exists=args.overwrite,
    )
    print(f"Created {path}")
    return 0


def _cmd_templates(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.scaffold import list_templates

    for name, description in list_templates().items():
        print(f"{name:20} {description}")
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from prefect_etl_blocks.registration import register_blocks

    return register_blocks(timeout_seconds=args.timeout)


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


def build_parser() -> argparse.ArgumentParser:
    """The ``petl`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="petl", description="prefect-etl-blocks: Prefect blocks for DuckDB + Polars pipelines."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="Generate sample sales data and run the daily-etl flow.")
    demo.add_argument("--workdir", default=".petl/demo", help="Folder for data and DuckDB file.")
    demo.add_argument("--rows", type=int, default=1_200_000, help="Rows of sample data.")
    demo.add_argument("--files", type=int, default=6, help="Number of Parquet files.")
    demo.add_argument("--regenerate", action="store_true", help="Rewrite the sample data.")
    demo.set_defaults(func=_cmd_demo)

    new = sub.add_parser("new", help="Scaffold a flow project from a shipped template.")
    new.add_argument("template", help="Template name, see `petl templates`.")
    new.add_argument("--output-dir", default=".", help="Where to create the project.")
    new.add_argument("--no-input", action="store_true", help="Use defaults; ask nothing.")
    new.add_argument("--overwrite", action="store_true", help="Overwrite an existing project.")
    new.add_argument("context", nargs="*", metavar="key=value", help="Answers to template questions.")
    new.set_defaults(func=_cmd_new)

    templates = sub.add_parser("templates", help="List the shipped templates.")
    templates.set_defaults(func=_cmd_templates)

    register = sub.add_parser("register", help="Register the block types with the Prefect API.")
    register.add_argument("--timeout", type=float, default=15.0, help="Seconds to wait for the API.")
    register.set_defaults(func=_cmd_register)

    version = sub.add_parser("version", help="Print versions.")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``petl`` console script."""
    parser = build_parser()
    # key=value answers may follow options (`petl new etl-flow --no-input retries=5`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) != "new" or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.context = [*args.context, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error instead of a traceback
        from prefect_etl_blocks.errors import PrefectETLBlocksError

        if isinstance(exc, PrefectETLBlocksError | ValueError | FileNotFoundError):
            print(f"petl {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
