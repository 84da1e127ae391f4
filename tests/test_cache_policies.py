"""``SourceFingerprint`` and ``FrameInputs``: keys that follow the data, in flows and across
processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE, CompoundCachePolicy

from prefect_etl_blocks import FrameInputs, ParquetSource, SourceFingerprint
from prefect_etl_blocks.cache_policies import frame_fingerprint, parquet_footer_sha256
from prefect_etl_blocks.errors import CorruptParquetError, DataError, SourceNotFoundError
from tests.fixtures.data import make_sales

REPO_ROOT = Path(__file__).resolve().parents[1]


def key(policy, **inputs) -> str | None:
    return policy.compute_key(task_ctx=None, inputs=inputs, flow_parameters={})


def relaid(frame: pl.DataFrame) -> pl.DataFrame:
    """The same values in another memory layout: several chunks, strings in other buffers."""
    padded = pl.concat([frame.head(1), frame], rechunk=True).slice(1)
    return pl.concat([padded.head(7), padded.slice(7)], rechunk=False)


# ---------------------------------------------------------------- frame fingerprints


def test_equal_frames_in_other_layouts_share_a_fingerprint() -> None:
    frame = make_sales(500)
    other = relaid(frame)
    assert other.n_chunks() > 1 and other.equals(frame)
    assert frame_fingerprint(other) == frame_fingerprint(frame)
    assert key(FrameInputs(), frame=other) == key(FrameInputs(), frame=frame)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.with_columns(
            pl.when(pl.col("order_id") == 3).then(0.5).otherwise(pl.col("value")).alias("value")
        ),
        lambda f: f.rename({"value": "amount"}),
        lambda f: f.with_columns(pl.col("order_id").cast(pl.Int32)),
        lambda f: f.reverse(),
        lambda f: f.head(499),
        lambda f: f.select(list(reversed(f.columns))),
        lambda f: f.with_columns(pl.col("category").cast(pl.Categorical)),
    ],
    ids=["value", "name", "dtype", "order", "rows", "column-order", "categorical"],
)
def test_any_change_changes_the_fingerprint(change) -> None:
    frame = make_sales(500)
    assert frame_fingerprint(change(frame)) != frame_fingerprint(frame)


def test_arrow_pandas_and_series_fingerprints() -> None:
    frame = make_sales(300)
    table, other_table = frame.to_arrow(), relaid(frame).to_arrow()
    assert frame_fingerprint(table) == frame_fingerprint(other_table)
    assert frame_fingerprint(table) != frame_fingerprint(frame)  # the type is part of it
    pandas_frame = frame.to_pandas()
    assert frame_fingerprint(pandas_frame) == frame_fingerprint(pandas_frame.copy())
    assert frame_fingerprint(pandas_frame) != frame_fingerprint(pandas_frame.iloc[::-1])
    assert frame_fingerprint(pandas_frame) != frame_fingerprint(pandas_frame.set_index("order_id"))
    assert frame_fingerprint(frame["value"]) == frame_fingerprint(relaid(frame)["value"])
    assert frame_fingerprint(frame["value"]) != frame_fingerprint(frame["value"].alias("v"))


def test_objects_without_a_content_hash() -> None:
    assert frame_fingerprint({"a": 1}) is None
    assert frame_fingerprint(make_sales(10).lazy()) is None
    objects = pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)})
    assert frame_fingerprint(objects) is None


def test_same_key_in_another_process() -> None:
    """Cache keys must match across processes (a second flow run is a new process)."""
    code = textwrap.dedent(
        """
        from prefect_etl_blocks import FrameInputs
        from tests.fixtures.data import make_sales
        frame = make_sales(2_000)
        print(FrameInputs().compute_key(None, {"frame": frame, "n": 3}, {}))
        print(FrameInputs().compute_key(None, {"frame": frame.to_pandas(), "n": 3}, {}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    polars_key, pandas_key = done.stdout.split()
    frame = relaid(make_sales(2_000))
    assert key(FrameInputs(), frame=frame, n=3) == polars_key
    assert key(FrameInputs(), frame=frame.to_pandas(), n=3) == pandas_key
    assert key(FrameInputs(), frame=make_sales(2_000, seed=1), n=3) != polars_key


# ---------------------------------------------------------------- FrameInputs policy


def test_frame_inputs_nested_and_other_arguments() -> None:
    frame = make_sales(100)
    base = key(FrameInputs(), frames=[frame, {"x": frame}], n=1)
    assert key(FrameInputs(), frames=[relaid(frame), {"x": relaid(frame)}], n=1) == base
    assert key(FrameInputs(), frames=[frame, {"x": frame.head(5)}], n=1) != base
    assert key(FrameInputs(), frames=[frame, {"x": frame}], n=2) != base


def test_frame_inputs_exclude() -> None:
    frame = make_sales(100)
    policy = FrameInputs() - "verbose"
    assert isinstance(policy, FrameInputs) and policy.exclude == ["verbose"]
    assert key(policy, frame=frame, verbose=True) == key(policy, frame=frame, verbose=False)
    assert key(FrameInputs(exclude=["verbose"]), frame=frame, verbose=True) == key(
        policy, frame=frame, verbose=False
    )
    assert key(FrameInputs()) is None
    with pytest.raises(TypeError):
        FrameInputs() - 1


def test_frame_inputs_combines_with_prefect_policies() -> None:
    combined = FrameInputs() + TASK_SOURCE
    assert isinstance(combined, CompoundCachePolicy)
    assert any(isinstance(p, FrameInputs) for p in combined.policies)


def test_unhashable_input_says_how_to_fix_it() -> None:
    import threading

    with pytest.raises(
        ValueError, match=r"FrameInputs\(exclude=\[\.\.\.\]\), or pass cache_policy=NO_CACHE"
    ):
        key(FrameInputs(), lock=threading.Lock())


def test_frame_inputs_cache_hit_across_flow_runs(tmp_path) -> None:
    calls: list[int] = []

    @task(
        cache_policy=FrameInputs() + TASK_SOURCE,
        result_storage=tmp_path / "results",
        result_serializer="polars-parquet",
        persist_result=True,
    )
    def summarise(frame: pl.DataFrame) -> pl.DataFrame:
        calls.append(frame.height)
        return frame.group_by("category").agg(pl.col("value").sum()).sort("category")

    @flow
    def pipeline(seed: int, relayout: bool) -> pl.DataFrame:
        frame = make_sales(1_000, seed=seed)
        return summarise(relaid(frame) if relayout else frame)

    first = pipeline(0, False)
    second = pipeline(0, True)  # equal data, other layout: a cache hit
    assert calls == [1_000]
    assert_frame_equal(second, first)
    pipeline(1, False)  # other data: a miss
    assert calls == [1_000, 1_000]


# ---------------------------------------------------------------- SourceFingerprint


def test_source_fingerprint_key(parquet_file, parquet_dir) -> None:
    source = ParquetSource(path=str(parquet_file))
    policy = SourceFingerprint()
    assert key(policy, n=1) is None  # no ParquetSource: no opinion
    first = key(policy, source=source, n=1)
    assert first is not None
    assert (
        key(policy, source=ParquetSource(path=str(parquet_file)), n=2) == first
    )  # other args ignored
    assert key(policy, other=source) != first  # the argument it came from is part of the key
    assert key(policy, source=ParquetSource(path=str(parquet_file), columns=["value"])) != first
    assert key(policy, source=ParquetSource(path=str(parquet_file), filter="value > 0")) != first
    nested = key(policy, sources=[source, {"b": ParquetSource(path=str(parquet_dir))}])
    assert nested not in (None, first)


def test_source_fingerprint_follows_the_files(parquet_file, parquet_dir) -> None:
    policy = SourceFingerprint()
    file_key = key(policy, source=ParquetSource(path=str(parquet_file)))
    dir_key = key(policy, source=ParquetSource(path=str(parquet_dir)))
    assert key(policy, source=ParquetSource(path=str(parquet_file))) == file_key

    make_sales(1_000, seed=5).write_parquet(parquet_file)
    assert key(policy, source=ParquetSource(path=str(parquet_file))) != file_key

    make_sales(10, seed=6).write_parquet(parquet_dir / "part-9.parquet")  # a new file
    assert key(policy, source=ParquetSource(path=str(parquet_dir))) != dir_key


def test_source_fingerprint_combines_with_inputs() -> None:
    combined = INPUTS + SourceFingerprint()
    assert isinstance(combined, CompoundCachePolicy)
    assert {type(p).__name__ for p in combined.policies} == {"Inputs", "SourceFingerprint"}


def test_missing_source_raises_before_the_task_runs(tmp_path) -> None:
    with pytest.raises(SourceNotFoundError):
        key(SourceFingerprint(), source=ParquetSource(path=str(tmp_path / "nothing.parquet")))


def test_cached_extract_follows_the_parquet_file(tmp_path, parquet_file) -> None:
    calls: list[str] = []

    @task(
        cache_policy=INPUTS + TASK_SOURCE + SourceFingerprint(),
        result_storage=tmp_path / "results",
        result_serializer="polars-parquet",
        persist_result=True,
    )
    def extract(source: ParquetSource) -> pl.DataFrame:
        calls.append(source.path)
        return source.read()

    @flow
    def pipeline(path: str) -> pl.DataFrame:
        return extract(ParquetSource(path=path))

    first = pipeline(str(parquet_file))
    assert_frame_equal(pipeline(str(parquet_file)), first)
    assert len(calls) == 1  # same file: cache hit

    changed = make_sales(1_000, seed=9)
    changed.write_parquet(parquet_file)
    assert_frame_equal(pipeline(str(parquet_file)), changed)  # rewritten: miss, fresh data
    assert len(calls) == 2
    assert_frame_equal(pipeline(str(parquet_file)), changed)
    assert len(calls) == 2


# ---------------------------------------------------------------- content mode


def same_size_frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two frames of the same shape whose values differ but have equal widths."""
    before = pl.DataFrame(
        {"id": list(range(100)), "code": [f"A{i:04d}" for i in range(100)]},
    )
    after = pl.DataFrame(
        {"id": list(range(100, 200)), "code": [f"B{i:04d}" for i in range(100)]},
    )
    return before, after


def rewrite_keeping_size_and_mtime(path: Path, frame: pl.DataFrame) -> None:
    """What ``cp -p`` / ``rsync -a`` do: other bytes, the old size and modification time."""
    before = path.stat()
    frame.write_parquet(path, compression="uncompressed")  # fixed-width values: same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_content_is_the_default_mode() -> None:
    assert SourceFingerprint().mode == "content"
    with pytest.raises(ValueError, match=r"mode='hash' is not one of \['stat', 'content'\]"):
        SourceFingerprint(mode="hash")


def test_content_mode_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path) -> None:
    before, after = same_size_frames()
    path = tmp_path / "data.parquet"
    before.write_parquet(path, compression="uncompressed")
    folder_source = ParquetSource(path=str(tmp_path / "*.parquet"))
    keys = {
        mode: (
            key(SourceFingerprint(mode=mode), source=ParquetSource(path=str(path))),
            key(SourceFingerprint(mode=mode), source=folder_source),
        )
        for mode in ("stat", "content")
    }
    assert keys["stat"] != keys["content"]

    rewrite_keeping_size_and_mtime(path, after)
    assert pl.read_parquet(path).equals(after)
    for mode, expected in keys.items():
        now = (
            key(SourceFingerprint(mode=mode), source=ParquetSource(path=str(path))),
            key(SourceFingerprint(mode=mode), source=folder_source),
        )
        if mode == "stat":
            assert now == expected  # the stale-cache case content mode exists for
        else:
            assert now[0] != expected[0] and now[1] != expected[1]

    # Writing the old data back restores the old content key: the key follows the data.
    rewrite_keeping_size_and_mtime(path, before)
    assert key(SourceFingerprint(), source=ParquetSource(path=str(path))) == keys["content"][0]


def test_stat_mode_keeps_the_keys_of_earlier_releases(parquet_file) -> None:
    from prefect.utilities.hashing import hash_objects

    source = ParquetSource(path=str(parquet_file))
    settings = {
        "path": str(parquet_file),
        "columns": None,
        "filter": None,
        "hive_partitioning": source.hive_partitioning,
        "expected_schema": None,
    }
    expected = hash_objects(
        "SourceFingerprint", [["source", settings, source.fingerprint()]], raise_on_failure=True
    )
    assert key(SourceFingerprint(mode="stat"), source=source) == expected


def test_footer_hash_covers_the_footer_only(tmp_path) -> None:
    path = tmp_path / "data.parquet"
    make_sales(200).write_parquet(path)
    data = path.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length : -8]
    assert parquet_footer_sha256(path) == hashlib.sha256(footer).hexdigest()
    assert parquet_footer_sha256(str(path)) == parquet_footer_sha256(path)


def test_footer_larger_than_the_first_read(tmp_path) -> None:
    path = tmp_path / "wide.parquet"
    pl.DataFrame({f"column_{i:05d}": [i, i + 1] for i in range(1_500)}).write_parquet(path)
    data = path.read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    assert length > 64 * 1024  # past the single read that holds a typical footer
    assert parquet_footer_sha256(path) == hashlib.sha256(data[-8 - length : -8]).hexdigest()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"PAR1", "is 4 bytes long, too short to be a Parquet file"),
        (b"PAR1" + b"\0" * 20 + b"\xff\xff\x00\x00PAR1", "does not end like a Parquet file"),
        (b"col_a,col_b\n1,2\n3,4\n", "does not end like a Parquet file"),
    ],
    ids=["tiny", "footer-longer-than-the-file", "csv"],
)
def test_a_file_that_is_not_parquet_is_named(tmp_path, content, message) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(content)
    with pytest.raises(CorruptParquetError, match=message) as caught:
        key(SourceFingerprint(), source=ParquetSource(path=str(path)))
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, DataError)


def test_truncated_parquet_file_is_refused(tmp_path) -> None:
    path = tmp_path / "cut.parquet"
    make_sales(100).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptParquetError, match="truncated, still being written, or not Parquet"):
        parquet_footer_sha256(path)


def test_s3_objects_key_on_their_etag_in_both_modes(parquet_object, aws_credentials) -> None:
    source = ParquetSource(path=parquet_object, aws_credentials=aws_credentials)
    stat_key = key(SourceFingerprint(mode="stat"), source=source)
    content_key = key(SourceFingerprint(), source=source)
    assert None not in (stat_key, content_key) and stat_key != content_key
    assert key(SourceFingerprint(), source=source) == content_key


def test_cached_extract_follows_a_rewrite_that_keeps_size_and_mtime(tmp_path) -> None:
    before, after = same_size_frames()
    path = tmp_path / "data.parquet"
    before.write_parquet(path, compression="uncompressed")
    calls: list[str] = []

    def make_extract(policy):
        @task(
            cache_policy=INPUTS + TASK_SOURCE + policy,
            result_storage=tmp_path / "results",
            result_serializer="polars-parquet",
            persist_result=True,
        )
        def extract(source: ParquetSource) -> pl.DataFrame:
            calls.append(source.path)
            return source.read()

        @flow
        def pipeline() -> pl.DataFrame:
            return extract(ParquetSource(path=str(path)))

        return pipeline

    content, stat = make_extract(SourceFingerprint()), make_extract(SourceFingerprint(mode="stat"))
    assert_frame_equal(content(), before)
    assert_frame_equal(stat(), before)
    assert len(calls) == 2

    rewrite_keeping_size_and_mtime(path, after)
    assert_frame_equal(stat(), before)  # stat mode: a stale cache hit
    assert_frame_equal(content(), after)  # content mode: a miss, fresh data
    assert len(calls) == 3
