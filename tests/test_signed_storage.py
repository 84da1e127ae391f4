"""Signed results hold on every storage ``dataframe_result_options`` accepts (issue 20, part 6).

Prefect decodes a stored record with the serializer the record names, so a forged record that
names Prefect's ``pickle`` serializer is unpickled unless the storage checks what it reads. Each
storage here gets the same forgery: a record naming ``pickle`` whose payload creates a marker
file when unpickled. The marker must never appear, the task recomputes (or, with cache keys
kept apart, fails) and the error is ``CorruptResultError`` naming where the record is stored.
S3 runs on moto's server over HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect_aws.s3 import S3Bucket

from prefect_etl_blocks import S3ResultStorage, dataframe_result_options
from prefect_etl_blocks.errors import CorruptResultError, UnsavedBlockError
from prefect_etl_blocks.results import SignatureNotEnforcedWarning
from prefect_etl_blocks.serializers import SIGNING_KEY_ENV, signing_key_id
from tests.fixtures.data import make_sales
from tests.fixtures.forgery import forge_pickle_record, prefect_pickle

SIGNING_KEY = "petl-signed-storage-key-7c41e0b9d2a85f36"


@dataclass
class Storage:
    """A saved storage block and raw access to the objects it holds (keys as Prefect uses them)."""

    block: Any
    list: Callable[[], dict[str, bytes]]
    put: Callable[[str, bytes], None]
    where: Callable[[str], str]  # the location an error must name for a key


def local_storage(tmp_path: Path) -> Storage:
    root = tmp_path / f"results-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    block = LocalFileSystem(basepath=str(root))
    block.save(f"local-{uuid.uuid4().hex[:12]}")
    return Storage(
        block,
        lambda: {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()},
        lambda key, body: (root / key).write_bytes(body),
        lambda key: f"Result {root.resolve() / key}",
    )


def s3_storage(cls: type, aws_credentials, s3_client, bucket: str) -> Storage:
    folder = "runs"
    block = cls(bucket_name=bucket, bucket_folder=folder, credentials=aws_credentials)
    block.save(f"{cls.get_block_type_slug()}-{bucket}")

    def listing() -> dict[str, bytes]:
        found = s3_client.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/").get("Contents", [])
        return {
            o["Key"].removeprefix(f"{folder}/"): s3_client.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"
            ].read()
            for o in found
        }

    return Storage(
        block,
        listing,
        lambda key, body: s3_client.put_object(Bucket=bucket, Key=f"{folder}/{key}", Body=body),
        lambda key: f"Result s3://{bucket}/{folder}/{key}",
    )


@pytest.fixture(params=["local-file-system", "s3-bucket", "s3-result-storage"])
def storage(request, tmp_path) -> Storage:
    if request.param == "local-file-system":
        return local_storage(tmp_path)
    aws_credentials = request.getfixturevalue("aws_credentials")
    s3_client = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("bucket")
    cls = S3Bucket if request.param == "s3-bucket" else S3ResultStorage
    return s3_storage(cls, aws_credentials, s3_client, bucket)


@pytest.fixture
def signing_key(monkeypatch):
    monkeypatch.setenv(SIGNING_KEY_ENV, SIGNING_KEY)
    return SIGNING_KEY


def cached_pipeline(options: dict, calls: list[str]):
    @task(**options)
    def frame_task(tag: str) -> pl.DataFrame:
        calls.append(tag)
        return make_sales(60)

    @flow
    def pipeline(tag: str):
        return frame_task(tag, return_state=True)

    return pipeline


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_forged_pickle_record_is_refused_on_every_storage(
    storage: Storage, signing_key, tmp_path, mode
) -> None:
    options = dataframe_result_options(storage.block, cache_policy=INPUTS + TASK_SOURCE)
    assert options["result_storage"]._block_document_id == storage.block._block_document_id
    calls: list[str] = []
    pipeline = cached_pipeline(options, calls)
    tag = uuid.uuid4().hex
    assert_frame_equal(pipeline(tag).result(), make_sales(60))
    ((key, record),) = storage.list().items()
    assert json.loads(record)["metadata"]["serializer"]["type"] == "polars-parquet"

    marker = tmp_path / "marker"
    storage.put(key, forge_pickle_record(record, marker))

    # Prefect's own store, reading as a task's cache lookup does: refused before decoding.
    store = ResultStore(result_storage=options["result_storage"])
    with pytest.raises(CorruptResultError) as caught:
        if mode == "sync":
            store.read(key)
        else:
            asyncio.run(store.aread(key))
    assert str(caught.value).startswith(
        f"{storage.where(key)} names the serializer 'pickle', but a result signing key is set"
    )
    assert SIGNING_KEY not in str(caught.value)
    assert not store.exists(key)
    assert not marker.exists()

    # The flow's cache lookup takes the forged record as a miss, recomputes and replaces it.
    assert_frame_equal(pipeline(tag).result(), make_sales(60))
    assert calls == [tag, tag]
    assert not marker.exists()
    head = json.loads(json.loads(storage.list()[key])["result"].split("\n", 1)[0])
    assert head["kid"] == signing_key_id(SIGNING_KEY)


def test_a_forged_cache_key_record_is_refused_naming_it(tmp_path, signing_key) -> None:
    """Cache metadata kept apart (``key_storage``): the record there names the serializer the
    result is decoded with, so it is checked too."""
    results = local_storage(tmp_path)
    keys = tmp_path / "cache-keys"
    policy = (INPUTS + TASK_SOURCE).configure(key_storage=keys)
    options = dataframe_result_options(results.block, cache_policy=policy)
    calls: list[str] = []
    pipeline = cached_pipeline(options, calls)
    tag = uuid.uuid4().hex
    assert_frame_equal(pipeline(tag).result(), make_sales(60))
    ((key_file,),) = [list(keys.iterdir())]
    genuine = json.loads(key_file.read_bytes())
    assert genuine["serializer"]["type"] == "polars-parquet"

    marker = tmp_path / "marker"
    key_file.write_text(json.dumps({**genuine, "serializer": {"type": "pickle"}}))
    results.put(genuine["storage_key"], prefect_pickle(marker).encode())

    store = ResultStore(
        result_storage=options["result_storage"],
        metadata_storage=options["cache_policy"].key_storage,
    )
    with pytest.raises(CorruptResultError) as caught:
        store.read(key_file.name)
    assert str(caught.value).startswith(
        f"Cache key record {keys.resolve() / key_file.name} names the serializer 'pickle', "
        "but a result signing key is set"
    )
    assert not marker.exists()

    # The task's cache lookup refuses it too: a miss, recomputed and replaced, never unpickled.
    assert_frame_equal(pipeline(tag).result(), make_sales(60))
    assert calls == [tag, tag]
    assert not marker.exists()
    assert json.loads(key_file.read_bytes())["serializer"]["type"] == "polars-parquet"


def test_without_a_key_nothing_changes_for_plain_storage(tmp_path, monkeypatch) -> None:
    """The check costs nothing without a key: a record naming pickle is read as before."""
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    results = local_storage(tmp_path)
    options = dataframe_result_options(results.block)
    assert options["result_storage"].storage is results.block
    options["result_storage"].write_path("plain", b"bytes as stored")
    assert options["result_storage"].read_path("plain") == b"bytes as stored"
    assert dataframe_result_options(tmp_path)["result_storage"] == tmp_path
    assert dataframe_result_options("local-file-system/x")["result_storage"] == (
        "local-file-system/x"
    )


def test_with_a_key_a_folder_path_is_refused_and_a_reference_is_loaded(
    tmp_path, signing_key
) -> None:
    with pytest.raises(UnsavedBlockError) as caught:
        dataframe_result_options(tmp_path / "results")
    assert str(caught.value).startswith(
        f"A local folder ({str(tmp_path / 'results')!r}) cannot hold signed results"
    )
    assert "LocalFileSystem(basepath=" in str(caught.value)

    results = local_storage(tmp_path)
    name = f"local-file-system/{results.block._block_document_name}"
    verified = dataframe_result_options(name)["result_storage"]
    assert verified.storage.basepath == results.block.basepath
    assert verified._block_document_id == results.block._block_document_id

    # key_storage as a block reference is loaded and checked the same way.
    policy = dataframe_result_options(
        results.block, cache_policy=INPUTS.configure(key_storage=name)
    )["cache_policy"]
    assert policy.key_storage.storage.basepath == results.block.basepath
    assert (
        policy.key_storage.location("k")
        == f"Cache key record {Path(results.block.basepath).resolve() / 'k'}"
    )


def test_with_a_key_storage_checked_only_in_process_is_warned_about(storage: Storage, signing_key) -> None:
    """Reads by id elsewhere (``state.result()`` from the API) go through the plain block, so
    every storage but ``S3ResultStorage`` is named in a warning with the fix."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataframe_result_options(storage.block)
    said = [w for w in caught if issubclass(w.category, SignatureNotEnforcedWarning)]
    if isinstance(storage.block, S3ResultStorage):
        assert said == []
    else:
        (warning,) = said
        assert str(warning.message).startswith(f"{type(storage.block).__name__} holds signed results")
        assert "Use an S3ResultStorage block" in str(warning.message)
        assert warning.filename == __file__  # points at the caller's line


def test_without_a_key_no_storage_is_warned_about(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataframe_result_options(local_storage(tmp_path).block)
    assert [w for w in caught if issubclass(w.category, SignatureNotEnforcedWarning)] == []
