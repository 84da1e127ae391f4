"""Named exceptions raised by prefect-etl-blocks, on one axis: can a retry help?

Every library error derives from exactly one of two classes:

* :class:`DataError`: bad input, schema, constraint, check, missing table or column, corrupt
  file, bad configuration. Running the same thing again gives the same failure, so the
  library's tasks never retry it.
* :class:`TransientError`: a lock held by another writer, a network or storage endpoint that
  did not answer, a transaction conflict, an SMTP 4xx. The same call may succeed later, so the
  library's tasks retry it (see :func:`prefect_etl_blocks.integration.tasks.retry_transient`).

Each message says what was wrong, where (file, column, field or table) and how to fix it.
Each class also derives from the built-in exception a caller would naturally expect
(``ValueError`` for bad input, ``FileNotFoundError`` for a missing file, ``TimeoutError`` for a
lock wait), so existing ``except`` clauses keep working.

Example:
    ```python
    from prefect_etl_blocks.core.errors import DataError, InvalidFilterError, TransientError

    assert issubclass(InvalidFilterError, DataError)
    assert not issubclass(InvalidFilterError, TransientError)
    ```
"""

from __future__ import annotations

import re


class PrefectETLBlocksError(Exception):
    """Base class of every error raised by prefect-etl-blocks."""

    #: ``True`` when running the same call again may succeed.
    retryable: bool = False


class DataError(PrefectETLBlocksError):
    """The input, schema, configuration or data is wrong; a retry gives the same failure."""

    retryable = False


class TransientError(PrefectETLBlocksError):
    """A passing condition (lock, network, storage, conflict); a retry may succeed."""

    retryable = True


# --- data errors -------------------------------------------------------------------------


class InvalidIdentifierError(DataError, ValueError):
    """A table, schema or column name that cannot be used as a DuckDB identifier."""


class SourceNotFoundError(DataError, FileNotFoundError):
    """A Parquet path, folder, glob or S3 prefix that matched no files."""


class SchemaMismatchError(DataError, ValueError):
    """Data whose columns or dtypes differ from the expected or the target table's schema."""


class UnsupportedDtypeError(SchemaMismatchError):
    """A column whose dtype has no faithful DuckDB type (a Decimal wider than 38 digits, a
    nanosecond Duration, Python objects that are not strings): nothing is written, and the
    message names the column, its dtype and what to cast it to."""


class CorruptParquetError(DataError, ValueError):
    """A file that is not valid Parquet."""


class InvalidFilterError(DataError, ValueError):
    """A ``filter`` that is not one row-level predicate over the source's columns."""


class ExtensionLoadError(DataError, RuntimeError):
    """A DuckDB extension that is not installed and could not be installed or loaded."""


class LoadError(DataError, RuntimeError):
    """A load that failed on its data; the target table was left exactly as it was."""


class LoadConfigError(DataError, ValueError):
    """A load asked for something that cannot work: an unknown ``mode`` or ``on_schema_change``,
    ``keys`` missing or not in the data, ``mode="fail"`` on a table that exists, a read-only
    block."""


class QueryError(DataError, ValueError):
    """SQL that DuckDB refused on its own terms: a syntax error, a table or column that does not
    exist. Running it again fails the same way; the message says how to fix it."""


class DataCheckError(DataError, ValueError):
    """A write-audit-publish check failed; the target table was left exactly as it was."""


class UnsavedBlockError(DataError, TypeError):
    """A block that must be saved (for example result storage) was used before ``.save()``."""


class NotificationTemplateError(DataError, ValueError):
    """A subject or body template with an unknown placeholder or bad syntax."""


class EmailRejectedError(DataError, RuntimeError):
    """An email the server refused for good: authentication, a 5xx reply, TLS set up wrongly."""


class TemplateNotFoundError(DataError, LookupError):
    """A cookiecutter template name that is not shipped with the package."""


class ProjectExistsError(DataError, FileExistsError):
    """``prefect-etl new`` would write into a folder that already exists (use ``--overwrite``)."""


class CorruptResultError(DataError, ValueError):
    """A stored task result that is truncated, corrupt, unsigned or not in ``polars-parquet``."""


# --- transient errors --------------------------------------------------------------------


class DuckDBLockTimeoutError(TransientError, TimeoutError):
    """Another process kept the DuckDB file locked for longer than ``lock_timeout_seconds``."""


class TransactionConflictError(TransientError, RuntimeError):
    """Another writer committed a conflicting change first; running the load again can succeed."""


class SourceUnavailableError(TransientError, OSError):
    """A source (object store, network file system) did not answer or dropped the connection."""


class EmailDeliveryError(TransientError, RuntimeError):
    """An email that could not be delivered now (server down or slow, a 4xx reply)."""


class ResultStorageError(TransientError, OSError):
    """A task result that could not be written to or read from result storage (endpoint
    unreachable, bucket missing, access denied)."""


# Messages of object-store / HTTP failures that say "the network or the service", not "the data".
NETWORK = re.compile(
    r"error sending request|connection (?:refused|reset|closed|aborted)|timed? ?out|dns error|"
    r"tcp connect|broken pipe|network is unreachable|unexpected eof|service unavailable|"
    r"slow ?down|temporarily unavailable|too many requests|\b50[0234]\b|could not connect",
    re.IGNORECASE,
)


def is_transient(exc: BaseException) -> bool:
    """``True`` when ``exc`` (or, for an unclassified wrapper, its cause) is worth retrying.

    Library errors answer for themselves. Outside the library, connection and timeout errors
    (``ConnectionError``, ``TimeoutError``, botocore's endpoint and connection errors, httpx's
    transport errors) count as transient; everything else does not.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PrefectETLBlocksError):
            return current.retryable
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        name = type(current).__name__
        if name in _TRANSIENT_NAMES:
            return True
        current = current.__cause__
    return False


# Third-party exception classes matched by name, so this module imports none of them.
_TRANSIENT_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ConnectError",
        "ReadTimeout",
        "ConnectTimeout",
        "RemoteProtocolError",
        "SMTPServerDisconnected",
    }
)


#: What DuckDB says when another process holds a database (or DuckLake metadata) file's lock.
LOCK_CONFLICT = "Could not set lock on file"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, for one-line error reports."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
