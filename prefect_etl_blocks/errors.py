"""Named exceptions raised by prefect-etl-blocks.

Every message says what was wrong, where (file, column, field or table), and how to fix it.
All exceptions derive from :class:`PrefectETLBlocksError`, so one ``except`` catches them all,
and each also derives from the built-in exception a caller would naturally expect
(``ValueError`` for bad input, ``FileNotFoundError`` for a missing file, ``TimeoutError`` for a
lock wait), so existing ``except`` clauses keep working.
"""

from __future__ import annotations


class PrefectETLBlocksError(Exception):
    """Base class of every error raised by prefect-etl-blocks."""


class InvalidIdentifierError(PrefectETLBlocksError, ValueError):
    """A table, schema or column name that cannot be used as a DuckDB identifier."""


class SourceNotFoundError(PrefectETLBlocksError, FileNotFoundError):
    """A Parquet path, folder, glob or S3 prefix that matched no files."""


class SchemaMismatchError(PrefectETLBlocksError, ValueError):
    """Data whose columns or dtypes differ from the expected schema."""


class CorruptParquetError(PrefectETLBlocksError, ValueError):
    """A file that is not valid Parquet."""


class InvalidFilterError(PrefectETLBlocksError, ValueError):
    """A ``filter`` predicate that cannot be parsed or refers to unknown columns."""


class ExtensionLoadError(PrefectETLBlocksError, RuntimeError):
    """A DuckDB extension that could not be installed or loaded."""


class DuckDBLockTimeoutError(PrefectETLBlocksError, TimeoutError):
    """Another process kept the DuckDB file locked for longer than ``lock_timeout_seconds``."""


class LoadError(PrefectETLBlocksError, RuntimeError):
    """A load that failed; the target table was left exactly as it was before the load."""


class UnsavedBlockError(PrefectETLBlocksError, TypeError):
    """A block that must be saved (for example result storage) was used before ``.save()``."""


class NotificationTemplateError(PrefectETLBlocksError, ValueError):
    """A subject or body template with an unknown placeholder or bad syntax."""


class EmailDeliveryError(PrefectETLBlocksError, RuntimeError):
    """An email that could not be delivered (server down, auth refused, TLS failure)."""


class TemplateNotFoundError(PrefectETLBlocksError, LookupError):
    """A cookiecutter template name that is not shipped with the package."""


class ResultStorageError(PrefectETLBlocksError, OSError):
    """A task result that could not be written to or read from result storage (endpoint
    unreachable, bucket missing, access denied)."""


class CorruptResultError(PrefectETLBlocksError, ValueError):
    """A stored task result that is truncated, corrupt or not in the ``polars-parquet`` format."""
