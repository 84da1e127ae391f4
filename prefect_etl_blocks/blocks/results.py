"""``S3ResultStorage``: an S3 (or MinIO / S3-compatible) bucket for persisted task results.

It is a prefect-aws ``S3Bucket`` (so ``read_path``/``write_path``, ``aread_path``/``awrite_path``
and every other ``S3Bucket`` method work) with its own block type, storage errors that name the
object, the endpoint and the fix, and :func:`dataframe_result_options`: the task options that
persist DataFrame results as Parquet in one line.

Sync/async follows prefect-aws: each I/O method exists as ``x`` and ``ax`` (``read_path`` and
``aread_path``); both go through the same two synchronous helpers below, which the async
variants run in a worker thread.

What happens when S3 fails (verified in ``tests/test_results.py``):

* S3 stores an object only when its upload completes (single PUT or multipart), so a failed
  write leaves nothing behind; the serializer's checksum rejects a damaged object anyway.
* Prefect 3 logs, but does not raise, errors from writing a result after the task or flow
  returned (``Transaction.commit`` in ``prefect/transactions.py``, ``return_value_to_state``
  in ``prefect/states.py``): the run still shows ``Completed``, its value is passed on in
  memory, the log carries :class:`~prefect_etl_blocks.core.errors.ResultStorageError` naming the
  object, the endpoint and the fix, and the next run with the same cache key recomputes.
* Prefect's cache lookup also swallows read errors: with S3 down a cached task recomputes.
  Keep the cache metadata apart (``cache_policy.configure(key_storage=...)``) and a task whose
  cached result cannot be read fails with ``ResultStorageError`` (and is retried when it has
  ``retries``) instead of silently recomputing.
"""

from __future__ import annotations

import copy
import inspect
import os
import warnings
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect.cache_policies import CachePolicy
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.serializers import Serializer
from prefect_aws.s3 import S3Bucket
from pydantic import PrivateAttr

from prefect_etl_blocks.core.errors import ResultStorageError, UnsavedBlockError, first_line
from prefect_etl_blocks.runtime.serializers import (
    SIGNING_KEY_ENV,
    PolarsParquetSerializer,
    check_stored_record,
)

DOCS_URL = "https://prefect-etl-blocks.readthedocs.io/en/latest/blocks/s3_result_storage/"

__all__ = ["S3ResultStorage", "SignatureNotEnforcedWarning", "dataframe_result_options"]


class S3ResultStorage(S3Bucket):
    """An S3 bucket folder for persisted task and flow results, usable as ``result_storage=``.

    Credentials are a prefect-aws ``AwsCredentials`` or ``MinIOCredentials`` block; for MinIO
    or another S3-compatible store set ``aws_client_parameters.endpoint_url`` on them.
    Save the block once, then give it to flows and tasks (Prefect refuses unsaved storage).

    Example:
        Load a saved result storage and persist DataFrame results in it as Parquet:
        ```python
        import polars as pl
        from prefect import flow, task

        from prefect_etl_blocks import S3ResultStorage

        storage = S3ResultStorage.load("BLOCK_NAME")

        @task(**storage.dataframe_result_options())
        def extract() -> pl.DataFrame:
            return pl.DataFrame({"a": [1, 2, 3]})

        @flow(result_storage=storage)
        def pipeline() -> None:
            extract()
        ```

        Create and save one for a MinIO server:
        ```python
        from prefect_aws import AwsCredentials

        from prefect_etl_blocks import S3ResultStorage

        S3ResultStorage(
            bucket_name="results",
            bucket_folder="etl",
            credentials=AwsCredentials(
                aws_access_key_id="minioadmin",
                aws_secret_access_key="minioadmin",
                aws_client_parameters={"endpoint_url": "http://127.0.0.1:9000"},
            ),
        ).save("etl-results")
        ```
    """

    _block_type_name = "S3 Result Storage"
    _logo_url = "https://cdn.sanity.io/images/3ugk85nk/production/d74b16fe84ce626345adf235a47008fea2869a60-225x225.png"  # noqa: E501
    _documentation_url = DOCS_URL
    _description = (
        "An S3 or S3-compatible (MinIO) bucket folder that stores persisted task and flow "
        "results; pairs with the polars-parquet serializer to store DataFrames as Parquet."
    )

    def dataframe_result_options(
        self,
        *,
        serializer: Serializer | str | None = None,
        cache_policy: CachePolicy | None = None,
    ) -> dict[str, Any]:
        """The task (or flow) options that persist results here as Parquet.

        Same as :func:`dataframe_result_options` with this block as the storage.

        Raises:
            UnsavedBlockError: when the block has not been saved yet.
        """
        return dataframe_result_options(self, serializer=serializer, cache_policy=cache_policy)

    def _endpoint(self) -> str:
        params = getattr(self.credentials, "aws_client_parameters", None)
        endpoint = getattr(params, "endpoint_url", None)
        return str(endpoint) if endpoint else "AWS S3"

    def _read_sync(self, key: str) -> bytes:
        # Both read_path and aread_path land here (prefect-aws S3Bucket, prefect-aws 0.5).
        try:
            data = super()._read_sync(key)
        except Exception as exc:
            raise ResultStorageError(
                f"Could not read result s3://{self.bucket_name}/{key} from {self._endpoint()}: "
                f"{first_line(exc).rstrip('.')}. Check that the endpoint is reachable, the bucket and "
                "object exist and the credentials may read them; re-run the task with "
                "refresh_cache=True to write the result again."
            ) from exc
        # Prefect decodes a record with the serializer the record itself names, so with a
        # signing key only signed polars-parquet content may reach it (see serializers.py).
        check_stored_record(data, f"Result s3://{self.bucket_name}/{key}")
        return data

    def _write_sync(self, key: str, data: bytes) -> None:
        # Both write_path and awrite_path land here. S3 stores an object only when its upload
        # completes, so a failure here never leaves a partial object for a later read.
        try:
            super()._write_sync(key, data)
        except Exception as exc:
            raise ResultStorageError(
                f"Could not write result s3://{self.bucket_name}/{key} to {self._endpoint()}: "
                f"{first_line(exc).rstrip('.')}. Nothing was stored, so the next run with the same cache "
                "key recomputes it. Check that the endpoint is reachable and that the "
                f"credentials may write to bucket {self.bucket_name!r}."
            ) from exc


class _VerifiedStorage(WritableFileSystem):
    """Any storage block with every object it reads passed through ``check_stored_record``.

    Prefect decodes a stored record with the serializer the record itself names, so a signing
    key protects results only when every read is checked before Prefect parses it.
    ``S3ResultStorage`` checks in ``_read_sync``; :func:`dataframe_result_options` wraps every
    other storage (``LocalFileSystem``, a plain ``S3Bucket``…) and the cache policy's
    ``key_storage`` in this class. Prefect's ``ResultStore`` calls ``read_path``/``aread_path``
    and ``write_path``/``awrite_path`` on it (``_sync=True`` for the sync ones, see
    ``prefect/_internal/compatibility/blocks.py`` and PrefectHQ/prefect#15008). It carries the
    wrapped block's document id, so result records still name the saved block and a process
    that loads them by id reads the same objects. It is never registered as a block type: it
    lives only in the running process.
    """

    _block_type_name = "Verified Result Storage"
    _block_type_slug = "prefect-etl-verified-result-storage"
    _documentation_url = DOCS_URL
    _description = "A result storage block whose reads are checked for signed results."

    _storage: Any = PrivateAttr(default=None)
    _role: str = PrivateAttr(default="Result")

    @classmethod
    def wrap(cls, storage: Block, role: str) -> _VerifiedStorage:
        wrapper = cls()
        wrapper._storage = storage
        wrapper._role = role
        wrapper._block_document_id = getattr(storage, "_block_document_id", None)
        wrapper._block_document_name = getattr(storage, "_block_document_name", None)
        return wrapper

    @property
    def storage(self) -> Block:
        """The wrapped storage block."""
        return self._storage

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._storage!r})"

    def location(self, path: str) -> str:
        """Where ``path`` is stored, as the errors name it (never with credentials)."""
        resolve = getattr(self._storage, "_resolve_path", None)
        try:
            where = str(resolve(path)) if resolve is not None else path
        except Exception:  # a path the storage refuses: name it as given
            where = path
        bucket = getattr(self._storage, "bucket_name", None)
        if bucket:
            where = f"s3://{bucket}/{where.lstrip('/')}"
        return f"{self._role} {where}"

    def read_path(self, path: str, _sync: bool | None = None) -> bytes:
        data = self._storage.read_path(path, _sync=True)
        check_stored_record(data, self.location(path))
        return data

    async def aread_path(self, path: str) -> bytes:
        data = await _call_async(self._storage, "read_path", path)
        check_stored_record(data, self.location(path))
        return data

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> Any:
        return self._storage.write_path(path, content, _sync=True)

    async def awrite_path(self, path: str, content: bytes) -> Any:
        return await _call_async(self._storage, "write_path", path, content)

    def _resolve_path(self, path: str) -> Any:
        resolve = getattr(self._storage, "_resolve_path", None)
        return resolve(path) if resolve is not None else path


async def _call_async(block: Any, method: str, *args: Any) -> Any:
    """``block.a<method>(*args)`` when the block has it, else the awaitable form of ``method``,
    the same order Prefect's ``ResultStore`` tries (PrefectHQ/prefect#15008)."""
    explicit = getattr(block, f"a{method}", None)
    if explicit is not None:
        return await explicit(*args)
    bound = getattr(block, method)
    if hasattr(bound, "aio"):
        return await bound.aio(block, *args)
    outcome = bound(*args)
    return await outcome if inspect.isawaitable(outcome) else outcome


def _signing_key_set() -> bool:
    return bool(os.environ.get(SIGNING_KEY_ENV))


def _verified(storage: Block, role: str) -> Block:
    """``storage`` with its reads checked; ``S3ResultStorage`` already checks its own."""
    if isinstance(storage, (S3ResultStorage, _VerifiedStorage)):
        return storage
    return _VerifiedStorage.wrap(storage, role)


class SignatureNotEnforcedWarning(UserWarning):
    """Signed results are checked on some reads of this storage but not on all of them: a
    state read back from the API (``state.result()`` after ``run_deployment``, say) loads the
    storage block by its saved id, and only ``S3ResultStorage`` checks its own reads there."""


def _warn_unchecked_elsewhere(storage: Block) -> None:
    if isinstance(storage, S3ResultStorage) or not _signing_key_set():
        return
    warnings.warn(
        f"{type(storage).__name__} holds signed results, but only the reads made through "
        "these task options are checked: a state read back from the API (state.result() after "
        "run_deployment, for example) loads the block by its id and decodes whatever record it "
        "finds, a forged one included. Use an S3ResultStorage block, which checks every read "
        "itself, to enforce the signature everywhere.",
        SignatureNotEnforcedWarning,
        stacklevel=4,
    )


def _verified_result_storage(storage: Block | str | Path) -> Block | str | Path:
    if isinstance(storage, Block):
        _warn_unchecked_elsewhere(storage)
        return _verified(storage, "Result")
    if not _signing_key_set():
        return storage  # a reference Prefect resolves when the task runs, as before
    if isinstance(storage, str):
        # Prefect would load the block only when the task runs, unchecked: load it now.
        loaded = Block.load(storage, _sync=True)
        _warn_unchecked_elsewhere(loaded)
        return _verified(loaded, "Result")
    raise UnsavedBlockError(
        f"A local folder ({str(storage)!r}) cannot hold signed results: Prefect writes there "
        "through an unsaved LocalFileSystem, whose reads nothing can check, and a forged "
        f"record would be decoded although {SIGNING_KEY_ENV} is set. Save a block for the "
        f'folder, for example `LocalFileSystem(basepath="{storage}").save("etl-results")`, '
        "and pass that block to dataframe_result_options."
    )


def _verified_key_storage(policy: CachePolicy) -> CachePolicy:
    """``policy`` with its ``key_storage`` (the cache records that name the serializer) checked."""
    storage = policy.key_storage
    if storage is None:
        return policy
    if isinstance(storage, Block):
        checked: Any = _verified(storage, "Cache key record")
    elif isinstance(storage, str) and len(storage.split("/")) == 2:
        # A block reference, the rule Prefect applies to key_storage (ResultStore.update_for_task).
        if not _signing_key_set():
            return policy
        checked = _verified(Block.load(storage, _sync=True), "Cache key record")
    else:
        # A folder: the LocalFileSystem Prefect would build for it, checked.
        checked = _verified(LocalFileSystem(basepath=str(storage)), "Cache key record")
    verified = copy.copy(policy)
    verified.key_storage = checked
    return verified


def dataframe_result_options(
    storage: WritableFileSystem | str | Path,
    *,
    serializer: Serializer | str | None = None,
    cache_policy: CachePolicy | None = None,
) -> dict[str, Any]:
    """The ``@task(...)`` options that persist a task's DataFrame result as Parquet.

    Returns ``{"result_storage": storage, "result_serializer": PolarsParquetSerializer(),
    "persist_result": True}`` (plus ``cache_policy`` when given), so a flow author writes
    ``@task(**dataframe_result_options(storage))``. The same keys work for ``@flow``
    except ``cache_policy``, and for ``task.with_options(...)``.

    Args:
        storage: a saved storage block (``S3ResultStorage``, ``LocalFileSystem``…), a block
            reference such as ``"s3-result-storage/etl-results"``, or a local folder path.
        serializer: another serializer or type name; ``PolarsParquetSerializer()`` by default.
        cache_policy: a cache policy to include, for example ``FrameInputs() + TASK_SOURCE``.

    Signed results: every object read from ``storage``, and from the cache policy's
    ``key_storage``, is checked against the signing key (``PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY``)
    before Prefect decodes it, whatever the storage type: a storage block other than
    ``S3ResultStorage`` (which checks its own reads) comes back wrapped in a block that checks
    each read, so compare ``options["result_storage"].storage`` with yours. With the key set
    when the options are built, a block reference is loaded at once (to be wrapped), and a
    local folder path is refused.

    Raises:
        UnsavedBlockError: when ``storage`` is a block that has not been saved, which Prefect
            would refuse when decorating the task, or a local folder path while a signing key
            is set (save a ``LocalFileSystem`` block for it).
    """
    if (
        not isinstance(storage, (str, Path))
        and getattr(storage, "_block_document_id", None) is None
    ):
        kind = type(storage).__name__
        name = getattr(storage, "bucket_name", None)
        what = f"{kind}(bucket_name={name!r})" if name else kind
        raise UnsavedBlockError(
            f"{what} has not been saved, and Prefect only accepts saved storage blocks as "
            f'result_storage. Save it first, for example `storage.save("etl-results")`, or '
            f'load a saved one with `{kind}.load("etl-results")`, then pass it to '
            "dataframe_result_options."
        )
    options: dict[str, Any] = {
        "result_storage": _verified_result_storage(storage),
        "result_serializer": serializer if serializer is not None else PolarsParquetSerializer(),
        "persist_result": True,
    }
    if cache_policy is not None:
        options["cache_policy"] = _verified_key_storage(cache_policy)
    return options
