"""What a DuckLake connection is made of, Prefect-free: the parsed catalog (:class:`CatalogSpec`),
the whole configuration (:class:`LakeConfig`), and the masking of its secrets in any text
(:func:`scrub`, :func:`clean_exception`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import duckdb

from prefect_etl_blocks.core.errors import (
    DuckDBLockTimeoutError,
    LoadConfigError,
    SourceUnavailableError,
    TransactionConflictError,
    first_line,
)

MASK = "********"
_PASSWORD_KV = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)")
_core_settings: frozenset[str] | None = None

__all__ = [
    "MASK", "CatalogSpec", "LakeConfig", "attach_error", "clean_exception", "scrub", "split_settings", "sql_literal",
]


class CatalogSpec:
    """A parsed ``catalog``: its kind, the connection text without password, and the password."""

    def __init__(self, raw: str) -> None:
        text = raw.strip()
        if text.startswith("ducklake:"):
            text = text[len("ducklake:"):]
        self.password: str | None = None
        kind, _, rest = text.partition(":")
        if kind in ("postgres", "postgresql") and rest:
            self.kind = "postgres"
            self.target = "postgres:" + self._take_password(rest)
        elif kind == "sqlite" and rest:
            self.kind, self.target = "sqlite", text
        else:
            self.kind = "duckdb"
            self.target = text[len("duckdb:"):] if text.startswith("duckdb:") else text
        if not self.target or self.target in ("postgres:", "sqlite:"):
            raise LoadConfigError(
                f"catalog {self.masked()!r} is empty: use 'postgres:dbname=... host=...', "
                "'sqlite:/path/catalog.sqlite' or a DuckDB metadata file such as "
                "'/data/lake/catalog.ducklake'."
            )

    def _take_password(self, conninfo: str) -> str:
        if conninfo.startswith(("postgresql://", "postgres://")):
            # DuckLake passes the text on as a key/value string, so a URI is rewritten into one.
            parts = urlsplit(conninfo)
            pairs: list[tuple[str, str]] = []
            for key, value in (("dbname", parts.path.lstrip("/")), ("host", parts.hostname),
                               ("port", parts.port), ("user", parts.username)):
                if value:
                    pairs.append((key, unquote(str(value))))
            pairs.extend(parse_qsl(parts.query))
            if parts.password is not None:
                self.password = unquote(parts.password)
            return " ".join(f"{key}={_conninfo_value(value)}" for key, value in pairs)
        match = _PASSWORD_KV.search(conninfo)
        if match:
            value = match.group(2)
            if value.startswith("'"):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            self.password = value
            conninfo = (conninfo[: match.start()] + conninfo[match.end():]).strip()
            conninfo = re.sub(r"\s{2,}", " ", conninfo)
        return conninfo

    @property
    def extensions(self) -> list[str]:
        return {"postgres": ["postgres"], "sqlite": ["sqlite"]}.get(self.kind, [])

    def masked(self) -> str:
        """The catalog as it may be shown: any password replaced by ``********``."""
        return self.target if self.password is None else f"{self.target} password={MASK}"


@dataclass(frozen=True)
class LakeConfig:
    """Everything a DuckLake connection is opened from (a block's fields, Prefect-free)."""

    catalog: str = field(repr=False)
    data_path: str | None = None
    read_only: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    extensions: list[str] = field(default_factory=list)
    init_sql: list[str] = field(default_factory=list)
    lock_timeout_seconds: float = 60.0
    commit_retries: int = 8
    #: Options of the temporary S3 secret (``KEY_ID``, ``SECRET``, ``REGION``, ...), or None.
    s3: dict[str, Any] | None = field(default=None, repr=False)
    #: Further secret values (of the storage credentials) to mask wherever they show.
    hidden: tuple[str | None, ...] = field(default=(), repr=False)

    @property
    def spec(self) -> CatalogSpec:
        return CatalogSpec(self.catalog)

    def secrets(self) -> list[str]:
        """The values no error or log may show."""
        values: list[str | None] = []
        try:
            values.append(self.spec.password)
        except Exception:  # an unparseable catalog: mask the whole text instead
            values.append(self.catalog)
        values.extend(self.hidden)
        return [v for v in values if v and len(v) >= 3]

    def key(self) -> str:
        """Configurations with the same key share one DuckDB instance per process."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()

    def data_extensions(self) -> list[str]:
        path = (self.data_path or "").lower()
        return ["httpfs"] if path.startswith(("s3://", "s3a://", "gs://", "gcs://", "r2://", "http")) else []


def _conninfo_value(value: str) -> str:
    """A libpq key/value string value, quoted when it holds spaces or quotes."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scrub(text: str, secrets: Sequence[str | None]) -> str:
    """``text`` with every secret value and any ``password=...`` pair masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _PASSWORD_KV.sub(lambda m: m.group(1) + MASK, text)


def clean_exception(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """``exc`` when no secret shows in it (or its causes), else a masked copy."""
    chain, current = [], exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if not any(scrub(str(e), secrets) != str(e) for e in chain):
        return exc
    message = scrub(str(exc), secrets)
    try:
        return type(exc)(message)
    except Exception:
        return RuntimeError(message)


def sql_literal(value: Any) -> str:
    """A SQL literal for a ``SET`` value (booleans, numbers, or a quoted string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings DuckDB knows at connect time, and the rest (extension settings, set later)."""
    global _core_settings
    if _core_settings is None:
        with duckdb.connect() as probe:
            _core_settings = frozenset(r[0] for r in probe.execute("SELECT name FROM duckdb_settings()").fetchall())
    core = {k: v for k, v in settings.items() if k in _core_settings}
    return core, {k: v for k, v in settings.items() if k not in core}


def attach_error(
    exc: duckdb.Error, spec: CatalogSpec, config: LakeConfig, *, locked: bool, racing: bool
) -> Exception:
    """What a failed ATTACH means, secrets masked."""
    text = scrub(first_line(exc), config.secrets())
    wait = config.lock_timeout_seconds
    if locked:
        return DuckDBLockTimeoutError(
            f"The DuckLake catalog file {spec.masked()!r} is locked by another process; "
            f"waited {wait:g} s. A DuckDB metadata file allows one process at a time: use a "
            "PostgreSQL catalog for concurrent writers, or raise lock_timeout_seconds."
        )
    if racing:
        return TransactionConflictError(
            f"The DuckLake catalog {spec.masked()!r} was still being created by another "
            f"process after {wait:g} s ({text}). Retrying can help; to avoid the wait, attach "
            "the catalog once before starting parallel workers."
        )
    if "does not match existing data path" in str(exc):
        return LoadConfigError(
            f"data_path {config.data_path!r} differs from the data path stored in the "
            f"DuckLake catalog {spec.masked()!r} ({text}). Use the catalog's data path, "
            "or leave data_path empty."
        )
    if isinstance(exc, duckdb.IOException | duckdb.ConnectionException) or "connect" in str(exc).lower():
        return SourceUnavailableError(
            f"Could not attach the DuckLake catalog {spec.masked()!r}: {text}. Check that "
            "the catalog database is running and reachable, and its name, user and password."
        )
    return LoadConfigError(f"Could not attach the DuckLake catalog {spec.masked()!r}: {text}.")
