"""``S3ResultStorage`` and ``dataframe_result_options``: flows persisting and reading results
through moto's S3 server over real HTTP, a cache hit in a fresh process, and S3 going away."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect import flow, task
from prefect.blocks.core import Block
from prefect.cache_policies import INPUTS, TASK_SOURCE
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite
from prefect_aws import AwsCredentials
from pydantic import SecretStr

from prefect_etl_blocks import PolarsParquetSerializer, S3ResultStorage, dataframe_result_options
from prefect_etl_blocks.errors import CorruptResultError, ResultStorageError, UnsavedBlockError
from prefect_etl_blocks.serializers import SIGNING_KEY_ENV, signing_key_id
from tests.fixtures.data import make_sales
from tests.fixtures.forgery import LeavesMarker, forge_pickle_record
from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY, start_moto_server
from tests.test_serializers import envelope as forged_envelope  # a record forged by hand

REPO_ROOT = Path(__file__).resolve().parents[1]


def fast_failing_credentials(endpoint_url: str) -> AwsCredentials:
    """Credentials that give up on a dead endpoint at once instead of retrying for seconds."""
    return AwsCredentials(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        aws_client_parameters={
            "endpoint_url": endpoint_url,
            "config": {"retries": {"max_attempts": 1, "mode": "standard"}, "connect_timeout": 5},
        },
    )


@pytest.fixture
def result_storage(aws_credentials, bucket) -> S3ResultStorage:
    """A saved ``S3ResultStorage`` on the session's moto server."""
    storage = S3ResultStorage(
        bucket_name=bucket, bucket_folder="results", credentials=aws_credentials
    )
    storage.save(f"results-{bucket}", overwrite=True)
    return storage


def objects(s3_client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"]: s3_client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing
    }


def serializer_type(stored: bytes) -> str | None:
    """The serializer of a task result record; None for a flow's bare result payload."""
    try:
        return json.loads(stored)["metadata"]["serializer"]["type"]
    except ValueError:
        return None


# ---------------------------------------------------------------- the block itself


class TestBlockStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return S3ResultStorage

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite downloads the logo; offline we only check it is set (prefect-aws's own).
        assert block._logo_url and str(block._logo_url).startswith("https://")


def test_is_a_writable_file_system_with_its_own_block_type() -> None:
    from prefect_aws.s3 import S3Bucket

    assert issubclass(S3ResultStorage, S3Bucket)
    assert S3ResultStorage.get_block_type_slug() == "s3-result-storage"
    assert {"read-path", "write-path"} <= set(S3ResultStorage.get_block_capabilities())


def test_read_and_write_path_use_the_bucket_folder(result_storage, s3_client, bucket) -> None:
    path = result_storage.write_path("probe/object.bin", content=b"payload")
    assert path == "results/probe/object.bin"
    assert s3_client.get_object(Bucket=bucket, Key=path)["Body"].read() == b"payload"
    assert result_storage.read_path("probe/object.bin") == b"payload"


def test_async_read_and_write_path(result_storage) -> None:
    async def round_trip() -> bytes:
        await result_storage.awrite_path("probe/async.bin", content=b"async payload")
        return await result_storage.aread_path("probe/async.bin")

    assert asyncio.run(round_trip()) == b"async payload"


def test_saved_block_loads_back(result_storage, bucket) -> None:
    loaded = S3ResultStorage.load(f"results-{bucket}")
    assert loaded.bucket_name == bucket
    assert loaded.bucket_folder == "results"
    loaded.write_path("probe/loaded.bin", content=b"x")
    assert result_storage.read_path("probe/loaded.bin") == b"x"


# ---------------------------------------------------------------- options helper


def test_dataframe_result_options(result_storage) -> None:
    options = result_storage.dataframe_result_options()
    assert set(options) == {"result_storage", "result_serializer", "persist_result"}
    assert options["result_storage"] is result_storage
    assert isinstance(options["result_serializer"], PolarsParquetSerializer)
    assert options["persist_result"] is True

    policy = INPUTS + TASK_SOURCE
    assert dataframe_result_options(result_storage, cache_policy=policy)["cache_policy"] is policy
    assert (
        dataframe_result_options("s3-result-storage/x")["result_storage"] == "s3-result-storage/x"
    )
    assert (
        dataframe_result_options(result_storage, serializer="pickle")["result_serializer"]
        == "pickle"
    )

    @task(**options)
    def decorated() -> int:
        return 1

    assert decorated.result_storage is result_storage


def test_unsaved_block_is_refused_with_the_fix(aws_credentials) -> None:
    storage = S3ResultStorage(bucket_name="etl", credentials=aws_credentials)
    with pytest.raises(UnsavedBlockError) as caught:
        storage.dataframe_result_options()
    assert str(caught.value) == (
        "S3ResultStorage(bucket_name='etl') has not been saved, and Prefect only accepts saved "
        'storage blocks as result_storage. Save it first, for example `storage.save("etl-results")`, '
        'or load a saved one with `S3ResultStorage.load("etl-results")`, then pass it to '
        "dataframe_result_options."
    )
    assert isinstance(caught.value, TypeError)  # what Prefect itself raises for this mistake


def test_unsaved_local_file_system_is_refused(tmp_path) -> None:
    with pytest.raises(UnsavedBlockError, match=r"^LocalFileSystem has not been saved"):
        dataframe_result_options(LocalFileSystem(basepath=str(tmp_path)))


# ---------------------------------------------------------------- flows through S3


def test_flow_writes_results_to_s3_and_reads_them_back(result_storage, s3_client, bucket) -> None:
    calls: list[int] = []

    @task(**result_storage.dataframe_result_options(cache_policy=INPUTS + TASK_SOURCE))
    def extract(rows: int) -> pl.DataFrame:
        calls.append(rows)
        return make_sales(rows)

    @flow(result_storage=result_storage, persist_result=True)
    def pipeline(rows: int) -> pl.DataFrame:
        return extract(rows)

    first = pipeline(300)
    stored = objects(s3_client, bucket, "results/")
    frames = {k: v for k, v in stored.items() if serializer_type(v) == "polars-parquet"}
    assert len(frames) == 1, sorted(stored)
    record = json.loads(next(iter(frames.values())))
    assert record["result"].startswith(
        '{"petl":"polars-parquet","version":1,"kind":"polars.DataFrame"'
    )

    second = pipeline(300)  # a new flow run: the task result comes back from S3
    assert calls == [300]
    assert type(second) is pl.DataFrame
    assert_frame_equal(second, first)
    assert_frame_equal(second, make_sales(300))

    pipeline(301)  # other inputs, other key
    assert calls == [300, 301]


@pytest.mark.parametrize(
    "make",
    [lambda f: f.lazy(), lambda f: f.to_arrow(), lambda f: f.to_pandas()],
    ids=["lazy", "arrow", "pandas"],
)
def test_frame_types_survive_a_cached_run(result_storage, make) -> None:
    calls: list[int] = []

    @task(**result_storage.dataframe_result_options(cache_policy=INPUTS + TASK_SOURCE))
    def extract(kind: str):
        calls.append(1)
        return make(make_sales(100))

    @flow
    def pipeline(kind: str):
        return extract(kind)

    kind = uuid.uuid4().hex  # a key of its own for each parametrisation
    first = pipeline(kind)
    second = pipeline(kind)
    assert calls == [1]
    assert type(second) is type(first)


FLOW_SCRIPT = '''
"""A flow that never imports prefect_etl_blocks: the storage block is a slug, so Prefect loads
the block class through the prefect.collections entry point, which registers polars-parquet."""
import json
import os
import sys

import polars as pl
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE


@task(
    result_storage=os.environ["PETL_RESULT_STORAGE"],
    result_serializer="polars-parquet",
    persist_result=True,
    cache_policy=INPUTS + TASK_SOURCE,
)
def build(rows: int) -> pl.DataFrame:
    with open(os.environ["PETL_COUNTER"], "a") as counter:
        counter.write("ran\\n")
    return pl.DataFrame({"i": list(range(rows)), "s": [f"v{i}" for i in range(rows)]})


@flow
def pipeline(rows: int) -> pl.DataFrame:
    return build(rows)


if __name__ == "__main__":
    imported_before = "prefect_etl_blocks" in sys.modules
    frame = pipeline(int(sys.argv[1]))
    print(json.dumps({
        "imported_before_run": imported_before,
        "type": type(frame).__name__,
        "rows": frame.height,
        "last": frame["s"][-1],
    }))
'''


def test_cache_hit_in_a_fresh_subprocess(result_storage, bucket, tmp_path, prefect_home) -> None:
    script = tmp_path / "petl_cached_flow.py"
    script.write_text(FLOW_SCRIPT)
    counter = tmp_path / "counter.txt"
    env = {
        **os.environ,
        "PETL_RESULT_STORAGE": f"s3-result-storage/results-{bucket}",
        "PETL_COUNTER": str(counter),
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_HOME": prefect_home,
        "PYTHONPATH": "",
    }

    def run() -> dict:
        done = subprocess.run(
            [sys.executable, str(script), "2000"],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run()
    assert counter.read_text() == "ran\n"
    second = run()  # a fresh interpreter: only the entry point can register the serializer
    assert counter.read_text() == "ran\n", "the second flow run re-ran the cached task"
    assert (
        second
        == first
        == {
            "imported_before_run": False,
            "type": "DataFrame",
            "rows": 2000,
            "last": "v1999",
        }
    )


# ---------------------------------------------------------------- S3 going away


class PrivateS3:
    """A moto server of the test's own that can be stopped and restarted on the same port
    (moto's backend lives in this process, so buckets and objects survive a restart)."""

    def __init__(self) -> None:
        self.server = start_moto_server()
        self.endpoint_url = self.server.endpoint_url
        self.bucket = f"petl-{uuid.uuid4().hex[:12]}"
        self.credentials = fast_failing_credentials(self.endpoint_url)
        self.client = self.credentials.get_s3_client()
        self.client.create_bucket(Bucket=self.bucket)

    def storage(self, folder: str = "") -> S3ResultStorage:
        storage = S3ResultStorage(
            bucket_name=self.bucket, bucket_folder=folder, credentials=self.credentials
        )
        storage.save(f"results-{self.bucket}-{folder or 'root'}")
        return storage

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        from moto.server import ThreadedMotoServer

        port = int(self.endpoint_url.rsplit(":", 1)[1])
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        self.server.server = server

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        return objects(self.client, self.bucket, prefix)


@pytest.fixture
def private_s3():
    s3 = PrivateS3()
    try:
        yield s3
    finally:
        s3.stop()


def test_s3_stopped_mid_run_stores_nothing_and_the_next_run_recomputes(private_s3, caplog) -> None:
    storage = private_s3.storage("run")
    options = storage.dataframe_result_options(cache_policy=INPUTS + TASK_SOURCE)
    calls: list[str] = []

    @task(**options)
    def before(rows: int) -> pl.DataFrame:
        calls.append("before")
        return make_sales(rows)

    @task
    def stop_s3(stop: bool) -> None:
        if stop:
            private_s3.stop()

    @task(**options)
    def after(rows: int) -> pl.DataFrame:
        calls.append("after")
        return make_sales(rows, seed=1)

    @flow(result_storage=storage, persist_result=True)
    def pipeline(rows: int, stop: bool) -> int:
        first = before(rows)
        stop_s3(stop)
        second = after(rows)
        return first.height + second.height

    with caplog.at_level(logging.WARNING):
        # Prefect logs errors from writing results after a task returned, and carries on
        # with the value in memory (prefect/transactions.py, Transaction.commit).
        assert pipeline(200, True) == 400
    assert calls == ["before", "after"]
    write_errors = [
        r.exc_info[1]
        for r in caplog.records
        if r.exc_info and isinstance(r.exc_info[1], ResultStorageError)
    ]
    assert write_errors, "the failed write of `after` was not reported"
    message = str(write_errors[0])
    assert message.startswith(f"Could not write result s3://{private_s3.bucket}/run/")
    assert f"to {private_s3.endpoint_url}: Could not connect to the endpoint URL" in message
    assert message.endswith(
        "Nothing was stored, so the next run with the same cache key recomputes it. Check that "
        "the endpoint is reachable and that the credentials may write to bucket "
        f"'{private_s3.bucket}'."
    )

    # S3 comes back with what it had: the result of `before` only, complete.
    private_s3.restart()
    stored = private_s3.objects()
    assert [serializer_type(v) for v in stored.values()] == ["polars-parquet"]
    (before_key,) = stored

    assert pipeline(200, False) == 400
    assert calls == ["before", "after", "after"]  # `before` from the cache, `after` recomputed
    frames = {
        k: v for k, v in private_s3.objects().items() if serializer_type(v) == "polars-parquet"
    }
    (after_key,) = set(frames) - {before_key}

    # A half-written object (what a non-atomic store could leave) is never read as a valid
    # result: the cache lookup rejects it, the task recomputes and writes a whole object.
    private_s3.client.put_object(
        Bucket=private_s3.bucket,
        Key=after_key,
        Body=frames[after_key][: len(frames[after_key]) // 2],
    )
    assert pipeline(200, False) == 400
    assert calls == ["before", "after", "after", "after"]
    assert private_s3.objects(after_key)[after_key] == frames[after_key]
    assert pipeline(200, False) == 400
    assert calls == ["before", "after", "after", "after"]


def test_unreadable_cached_result_fails_the_task_and_is_retried(
    private_s3, tmp_path, caplog
) -> None:
    """With the cache metadata kept apart, S3 being down no longer looks like a cache miss:
    the task fails with the clear error (after its retries) instead of recomputing."""
    storage = private_s3.storage()
    policy = (INPUTS + TASK_SOURCE).configure(key_storage=tmp_path / "cache-keys")
    calls: list[int] = []

    @task(retries=1, **storage.dataframe_result_options(cache_policy=policy))
    def extract(rows: int) -> pl.DataFrame:
        calls.append(rows)
        return make_sales(rows)

    @flow
    def pipeline(rows: int):
        return extract(rows, return_state=True)

    assert pipeline(100).is_completed()
    assert calls == [100]
    assert len(private_s3.objects()) == 1

    private_s3.stop()
    with caplog.at_level(logging.INFO):
        state = pipeline(100, return_state=True)
    assert state.is_failed()
    assert calls == [100]  # neither attempt recomputed silently
    with pytest.raises(ResultStorageError) as caught:
        state.result()
    assert str(caught.value).startswith(f"Could not read result s3://{private_s3.bucket}/")
    assert "Retry 1/1 will start immediately" in caplog.text

    # Back up: a half-written result is rejected with the corruption error, and
    # refresh_cache=True replaces it.
    private_s3.restart()
    ((key, whole),) = private_s3.objects().items()
    private_s3.client.put_object(Bucket=private_s3.bucket, Key=key, Body=whole[:-100])
    state = pipeline(100, return_state=True)
    assert state.is_failed()
    with pytest.raises(CorruptResultError, match=r"is truncated: expected \d+ payload bytes"):
        state.result()
    assert calls == [100]

    refreshed = extract.with_options(refresh_cache=True)

    @flow
    def refresh(rows: int) -> pl.DataFrame:
        return refreshed(rows)

    assert_frame_equal(refresh(100), make_sales(100))
    assert calls == [100, 100]
    assert private_s3.objects()[key] == whole
    assert_frame_equal(pipeline(100).result(), make_sales(100))
    assert calls == [100, 100]


def test_storage_errors_name_the_object_the_endpoint_and_the_fix(private_s3) -> None:
    storage = private_s3.storage()
    storage.write_path("kept", content=b"x")
    private_s3.stop()
    with pytest.raises(ResultStorageError) as caught:
        storage.read_path("kept")
    assert str(caught.value).startswith(
        f"Could not read result s3://{private_s3.bucket}/kept from {private_s3.endpoint_url}: "
        "Could not connect to the endpoint URL"
    )
    assert str(caught.value).endswith(
        "Check that the endpoint is reachable, the bucket and object exist and the "
        "credentials may read them; re-run the task with refresh_cache=True to write the "
        "result again."
    )
    assert isinstance(caught.value, OSError)
    with pytest.raises(ResultStorageError, match=r"^Could not write result s3://"):
        storage.write_path("new", content=b"y")


# ---------------------------------------------------------------- signed results

SIGNING_KEY = "petl-results-signing-key-5d2f8e1a9c7b3e60"
OTHER_SIGNING_KEY = "petl-rotated-signing-key-93b1c0d4e7a6f528"


def forged_frame_envelope(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return forged_envelope(buffer.getvalue(), "polars.DataFrame", "parquet", "zstd")


def forged_pickle_envelope(marker: Path) -> bytes:
    return forged_envelope(pickle.dumps(LeavesMarker(marker)), "object", "pickle", None)


def envelope_header(envelope: str | bytes) -> dict:
    text = envelope if isinstance(envelope, str) else envelope.decode()
    return json.loads(text.split("\n", 1)[0])


def records_by_kind(s3_client, bucket: str) -> dict[str, tuple[str, dict]]:
    """The polars-parquet result records in the bucket, by the kind in their envelope."""
    found = {}
    for key, body in objects(s3_client, bucket).items():
        if serializer_type(body) == "polars-parquet":
            record = json.loads(body)
            found[envelope_header(record["result"])["kind"]] = (key, record)
    return found


def put_forged_result(s3_client, bucket: str, key: str, record: dict, envelope: bytes) -> None:
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=json.dumps({**record, "result": envelope.decode()}).encode()
    )


@pytest.fixture
def signing_env(monkeypatch):
    """Sets or clears the signing key for this process, as a worker's environment would."""
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)

    def set_key(key: str | None) -> None:
        if key is None:
            monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
        else:
            monkeypatch.setenv(SIGNING_KEY_ENV, key)

    return set_key


def two_cached_tasks(result_storage, calls: list[str]):
    """A flow with a frame task and a non-frame (pickled) task, both cached on S3."""
    options = result_storage.dataframe_result_options(cache_policy=INPUTS + TASK_SOURCE)

    @task(**options)
    def frame_task(tag: str) -> pl.DataFrame:
        calls.append("frame")
        return make_sales(120)

    @task(**options)
    def object_task(tag: str) -> dict:
        calls.append("object")
        return {"tag": tag, "rows": 120}

    @flow
    def pipeline(tag: str) -> tuple[pl.DataFrame, dict]:
        return frame_task(tag), object_task(tag)

    return pipeline


def test_signed_results_round_trip_through_s3(result_storage, s3_client, bucket, signing_env):
    signing_env(SIGNING_KEY)
    calls: list[str] = []
    pipeline = two_cached_tasks(result_storage, calls)
    tag = uuid.uuid4().hex
    first = pipeline(tag)
    stored = records_by_kind(s3_client, bucket)
    assert set(stored) == {"polars.DataFrame", "object"}
    for _, record in stored.values():
        head = envelope_header(record["result"])
        assert head["alg"] == "hmac-sha256"
        assert head["kid"] == signing_key_id(SIGNING_KEY)
        assert len(head["hmac"]) == 64
        assert SIGNING_KEY not in json.dumps(record)
    second = pipeline(tag)
    assert calls == ["frame", "object"]  # both read back from S3, signature checked
    assert_frame_equal(second[0], first[0])
    assert second[1] == first[1] == {"tag": tag, "rows": 120}


def test_key_on_the_serializer_signs_and_the_environment_key_verifies(
    result_storage, s3_client, bucket, signing_env
):
    """Prefect reads a result with a serializer rebuilt from the stored record, which never
    holds the key: the field signs what the task writes, the environment verifies reads."""
    serializer = PolarsParquetSerializer(signing_key=SecretStr(SIGNING_KEY))
    calls: list[int] = []

    @task(
        result_storage=result_storage,
        result_serializer=serializer,
        persist_result=True,
        cache_policy=INPUTS + TASK_SOURCE,
    )
    def extract(rows: int) -> pl.DataFrame:
        calls.append(rows)
        return make_sales(rows)

    @flow
    def pipeline(rows: int) -> pl.DataFrame:
        return extract(rows)

    rows = 50 + uuid.uuid4().int % 50
    pipeline(rows)
    ((_, record),) = records_by_kind(s3_client, bucket).values()
    assert envelope_header(record["result"])["kid"] == signing_key_id(SIGNING_KEY)
    assert "signing_key" not in record["metadata"]["serializer"]
    signing_env(SIGNING_KEY)
    assert_frame_equal(pipeline(rows), make_sales(rows))
    assert calls == [rows]
    signing_env(OTHER_SIGNING_KEY)  # a reader with another key: refused, so recomputed
    assert_frame_equal(pipeline(rows), make_sales(rows))
    assert calls == [rows, rows]


def test_forged_results_in_the_bucket_are_refused_and_recomputed(
    result_storage, s3_client, bucket, signing_env, tmp_path
):
    calls: list[str] = []
    pipeline = two_cached_tasks(result_storage, calls)
    tag = uuid.uuid4().hex
    genuine = make_sales(120)
    tampered = genuine.with_columns(pl.col("value") * 1000)

    # Without a key, a forged frame with a correct SHA-256 is served as a cache hit.
    pipeline(tag)
    stored = records_by_kind(s3_client, bucket)
    frame_key, frame_record = stored["polars.DataFrame"]
    put_forged_result(s3_client, bucket, frame_key, frame_record, forged_frame_envelope(tampered))
    assert_frame_equal(pipeline(tag)[0], tampered)
    assert calls == ["frame", "object"]

    # With the key, neither forgery is read: both tasks recompute, nothing is unpickled.
    signing_env(SIGNING_KEY)
    marker = tmp_path / "marker"
    object_key, object_record = stored["object"]
    put_forged_result(s3_client, bucket, frame_key, frame_record, forged_frame_envelope(tampered))
    put_forged_result(s3_client, bucket, object_key, object_record, forged_pickle_envelope(marker))
    frame, obj = pipeline(tag)
    assert calls == ["frame", "object", "frame", "object"]
    assert not marker.exists()
    assert_frame_equal(frame, genuine)
    assert obj == {"tag": tag, "rows": 120}

    # The recomputed results replaced the forgeries, signed, and are cache hits from now on.
    for key, record in records_by_kind(s3_client, bucket).values():
        assert key in (frame_key, object_key)
        assert envelope_header(record["result"])["kid"] == signing_key_id(SIGNING_KEY)
    frame, obj = pipeline(tag)
    assert calls == ["frame", "object", "frame", "object"]
    assert_frame_equal(frame, genuine)


def test_unsigned_results_from_before_the_key_are_recomputed_once(
    result_storage, s3_client, bucket, signing_env
):
    calls: list[str] = []
    pipeline = two_cached_tasks(result_storage, calls)
    tag = uuid.uuid4().hex
    pipeline(tag)
    assert all(
        "hmac" not in envelope_header(r["result"])
        for _, r in records_by_kind(s3_client, bucket).values()
    )
    signing_env(SIGNING_KEY)
    pipeline(tag)
    assert calls == ["frame", "object", "frame", "object"]
    pipeline(tag)
    assert calls == ["frame", "object", "frame", "object"]


def test_wrong_key_and_forgeries_fail_the_task_when_cache_keys_are_kept_apart(
    private_s3, signing_env, tmp_path
) -> None:
    """With cache metadata kept apart, a result that fails its signature is not a miss: the
    task fails with an error naming both key ids, and a forged pickle is never unpickled."""
    storage = private_s3.storage()
    policy = (INPUTS + TASK_SOURCE).configure(key_storage=tmp_path / "cache-keys")
    calls: list[int] = []

    @task(**storage.dataframe_result_options(cache_policy=policy))
    def summary(rows: int) -> dict:
        calls.append(rows)
        return {"rows": rows}

    @flow
    def pipeline(rows: int):
        return summary(rows, return_state=True)

    signing_env(SIGNING_KEY)
    assert pipeline(7).result() == {"rows": 7}
    ((key, whole),) = private_s3.objects().items()
    assert envelope_header(whole)["kid"] == signing_key_id(SIGNING_KEY)

    signing_env(OTHER_SIGNING_KEY)  # a worker given another key
    state = pipeline(7, return_state=True)
    assert state.is_failed()
    with pytest.raises(CorruptResultError) as caught:
        state.result()
    assert str(caught.value).startswith(
        f"polars-parquet result of kind 'object' is signed with key id "
        f"{signing_key_id(SIGNING_KEY)}, but this process's key (from the environment variable "
        f"{SIGNING_KEY_ENV}) has key id {signing_key_id(OTHER_SIGNING_KEY)}."
    )
    assert SIGNING_KEY not in str(caught.value) and OTHER_SIGNING_KEY not in str(caught.value)

    signing_env(SIGNING_KEY)
    marker = tmp_path / "marker"
    private_s3.client.put_object(
        Bucket=private_s3.bucket, Key=key, Body=forged_pickle_envelope(marker)
    )
    state = pipeline(7, return_state=True)
    assert state.is_failed()
    with pytest.raises(CorruptResultError, match="is not signed, but this process has a result"):
        state.result()
    assert not marker.exists()
    assert calls == [7]


def test_a_record_naming_another_serializer_is_refused_with_a_key(
    result_storage, s3_client, bucket, signing_env, tmp_path
):
    signing_env(SIGNING_KEY)
    calls: list[str] = []
    pipeline = two_cached_tasks(result_storage, calls)
    tag = uuid.uuid4().hex
    pipeline(tag)
    frame_key, frame_record = records_by_kind(s3_client, bucket)["polars.DataFrame"]
    marker = tmp_path / "marker"
    forged = forge_pickle_record(frame_record, marker)
    s3_client.put_object(Bucket=bucket, Key=frame_key, Body=forged)
    frame, _ = pipeline(tag)
    assert not marker.exists()
    assert calls == ["frame", "object", "frame"]
    assert_frame_equal(frame, make_sales(120))
