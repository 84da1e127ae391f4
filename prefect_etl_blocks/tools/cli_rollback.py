"""``prefect-etl rollback --block NAME TABLE LOAD_ID``: put a table of a saved DuckLake block back
as it was just before one load (:meth:`~prefect_etl_blocks.DuckLakeConnection.rollback`).

:mod:`prefect_etl_blocks.tools.cli` reads the arguments; Prefect and the blocks are imported
only when the command runs. A saved ``DuckDBConnection`` is accepted too: its ``rollback``
refuses and says what to do instead.
"""

from __future__ import annotations

import shlex
from typing import Any

from prefect_etl_blocks.tools.cli_errors import PROG, UsageError

#: The block types ``--block`` may name, as Prefect slugs them.
SLUGS = ("ducklake-connection", "duckdb-connection")


def load_block(name: str) -> Any:
    """The saved block called ``name`` (``NAME`` or ``SLUG/NAME``): a DuckLake Connection, else
    a DuckDB Connection; a :class:`UsageError` naming both when there is neither."""
    from prefect_etl_blocks.blocks.duckdb import DuckDBConnection
    from prefect_etl_blocks.blocks.ducklake import DuckLakeConnection

    classes = {"ducklake-connection": DuckLakeConnection, "duckdb-connection": DuckDBConnection}
    slug, _, plain = name.rpartition("/")
    if slug and slug not in classes:
        raise UsageError(
            f"--block {name!r}: {slug!r} is not a block type rollback works on; name a "
            f"{' or '.join(SLUGS)} block (or just its name).",
            where=f"{PROG} rollback",
        )
    for cls in [classes[slug]] if slug else list(classes.values()):
        try:
            return cls.load(plain, _sync=True)
        except ValueError as exc:
            if "Unable to find block document" not in str(exc):
                raise
    kinds = slug or " or ".join(SLUGS)
    raise UsageError(
        f"no saved {kinds} block named {plain!r}; `prefect block ls` lists the saved blocks "
        "(save one with DuckLakeConnection(...).save(NAME)).",
        where=f"{PROG} rollback",
    )


def run_rollback(block_name: str, table: str, load_id: str, *, force: bool = False) -> int:
    """Roll ``table`` of the saved block back to before ``load_id`` and say what happened."""
    block = load_block(block_name)
    result = block.rollback(table, load_id, force=force)
    where = f" in snapshot {result.snapshot_id}" if result.snapshot_id is not None else ""
    changes = f"; {', '.join(result.schema_changes)}" if result.schema_changes else ""
    print(
        f"Rolled back load {load_id} of {table}: {result.inserted:,} row(s) put back, "
        f"{result.deleted:,} taken out{changes}; committed{where} as load {result.load_id}."
    )
    undo = " ".join(shlex.quote(a) for a in ("--block", block_name, table, result.load_id))
    print(f"To undo this rollback: {PROG} rollback {undo}")
    return 0


__all__ = ["SLUGS", "load_block", "run_rollback"]
