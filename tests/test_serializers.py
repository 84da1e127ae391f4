"""``PolarsParquetSerializer``: frame round trips (hypothesis), the envelope, corruption checks
and registration in fresh processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from polars.testing.parametric import dataframes
from prefect._internal.result_records import ResultRecord, ResultRecordMetadata
from prefect.results import resolve_serializer
from prefect.serializers import PickleSerializer, Serializer

from prefect_etl_blocks import PolarsParquetSerializer
from prefect_etl_blocks.errors import CorruptResultError, PrefectETLBlocksError
from tests.fixtures.data import make_sales

HYPOTHESIS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PANDAS_DTYPES = [
    pl.Int64,
    pl.Int32,
    pl.Float64,
    pl.String,
    pl.Boolean,
    pl.Date,
    pl.Datetime("us"),
    pl.Datetime("ms", "UTC"),
    pl.Duration("us"),
    pl.Categorical,
    pl.Binary,
    pl.List(pl.Int64),
]


def header(blob: bytes) -> dict:
    return json.loads(blob.split(b"\n", 1)[0])


@pytest.fixture
def serializer() -> PolarsParquetSerializer:
    return PolarsParquetSerializer()


# ---------------------------------------------------------------- registration


def test_type_name_resolves_to_the_serializer() -> None:
    assert type(Serializer(type="polars-parquet")) is PolarsParquetSerializer
    assert type(resolve_serializer("polars-parquet")) is PolarsParquetSerializer
    assert PolarsParquetSerializer().type == "polars-parquet"


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_fresh_process_registers_it_on_package_import() -> None:
    done = _fresh_python(
        """
        import prefect_etl_blocks
        from prefect.serializers import Serializer
        print(type(Serializer(type="polars-parquet")).__qualname__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PolarsParquetSerializer"


def test_fresh_process_registers_it_through_the_prefect_collections_entry_point() -> None:
    """Prefect imports collections when it loads a block class by slug (a result storage
    block given as 'slug/name'); the entry point must register the serializer then."""
    done = _fresh_python(
        """
        import sys
        from prefect.plugins import load_prefect_collections
        from prefect.serializers import Serializer
        assert "prefect_etl_blocks" not in sys.modules
        loaded = load_prefect_collections()
        assert not isinstance(loaded["prefect_etl_blocks"], Exception), loaded["prefect_etl_blocks"]
        print(type(Serializer(type="polars-parquet")).__qualname__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PolarsParquetSerializer"


def test_a_process_without_the_serializer_cannot_read_its_results(serializer) -> None:
    """Why registration matters: Prefect reads such a record with a placeholder serializer
    that raises, which its cache lookup turns into a miss (the task re-runs)."""
    record = ResultRecord(
        result=pl.DataFrame({"a": [1]}), metadata=ResultRecordMetadata(serializer=serializer)
    )
    blob = record.serialize().decode()
    done = _fresh_python(
        f"""
        from prefect._internal.result_records import ResultRecord
        try:
            ResultRecord.deserialize({blob!r}.encode())
        except RuntimeError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "Serializer 'polars-parquet' is not available in this environment" in done.stdout


# ---------------------------------------------------------------- envelope


def test_dumps_returns_ascii_json_safe_bytes(serializer) -> None:
    blob = serializer.dumps(make_sales(200))
    assert isinstance(blob, bytes)
    text = blob.decode("ascii")
    assert json.loads(json.dumps(text)) == text
    head = header(blob)
    assert head["petl"] == "polars-parquet"
    assert head["version"] == 1
    assert head["kind"] == "polars.DataFrame"
    assert head["encoding"] == "parquet"
    assert head["compression"] == "zstd"
    payload = base64.b64decode(blob.split(b"\n", 1)[1])
    assert payload[:4] == b"PAR1" and head["size"] == len(payload)


def test_prefect_result_record_round_trip(serializer) -> None:
    frame = make_sales(500)
    record = ResultRecord(result=frame, metadata=ResultRecordMetadata(serializer=serializer))
    stored = record.serialize()
    loaded = ResultRecord.deserialize(stored)
    assert type(loaded.metadata.serializer) is PolarsParquetSerializer
    assert_frame_equal(loaded.result, frame)


def test_parquet_is_far_smaller_than_prefects_pickle(serializer) -> None:
    frame = make_sales(50_000)
    ours = len(serializer.dumps(frame))
    pickled = len(PickleSerializer().dumps(frame))
    assert ours * 4 <= pickled, (ours, pickled)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "snappy", "gzip", "uncompressed"])
def test_compression_setting(compression) -> None:
    serializer = PolarsParquetSerializer(compression=compression)
    frame = make_sales(300)
    blob = serializer.dumps(frame)
    assert header(blob)["compression"] == compression
    assert_frame_equal(serializer.loads(blob), frame)


def test_compression_level_needs_a_codec_with_levels() -> None:
    assert PolarsParquetSerializer(compression="gzip", compression_level=9).compression_level == 9
    with pytest.raises(ValueError) as caught:
        PolarsParquetSerializer(compression="snappy", compression_level=3)
    assert (
        "compression_level=3 does not apply to compression='snappy'; set compression to one of "
        "['brotli', 'gzip', 'zstd'] or leave compression_level unset."
    ) in str(caught.value)


def test_settings_travel_with_the_result_metadata() -> None:
    serializer = PolarsParquetSerializer(compression="gzip", compression_level=9)
    metadata = ResultRecordMetadata(serializer=serializer)
    restored = ResultRecordMetadata.load_bytes(metadata.dump_bytes())
    assert restored.serializer == serializer


# ---------------------------------------------------------------- frame types


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda f: f, "polars.DataFrame"),
        (lambda f: f.lazy(), "polars.LazyFrame"),
        (lambda f: f.to_arrow(), "pyarrow.Table"),
        (lambda f: f.to_pandas(), "pandas.DataFrame"),
    ],
    ids=["polars", "lazy", "arrow", "pandas"],
)
def test_frame_type_is_restored(serializer, make, kind) -> None:
    frame = make_sales(400)
    obj = make(frame)
    blob = serializer.dumps(obj)
    assert header(blob)["kind"] == kind
    assert header(blob)["encoding"] == "parquet"
    loaded = serializer.loads(blob)
    assert type(loaded) is type(obj)
    if isinstance(obj, pl.LazyFrame):
        assert_frame_equal(loaded.collect(), frame)
    elif isinstance(obj, pa.Table):
        assert loaded.equals(obj)
    elif isinstance(obj, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, obj)
    else:
        assert_frame_equal(loaded, obj)


def test_pandas_index_is_restored(serializer) -> None:
    frame = make_sales(50).to_pandas().set_index(["region", "order_id"]).sort_index()
    loaded = serializer.loads(serializer.dumps(frame))
    pd.testing.assert_frame_equal(loaded, frame)


class Marker:
    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and other.value == self.value


@pytest.mark.parametrize(
    "obj",
    [
        {"rows": 3, "name": "sales"},
        [1, 2.5, None, "x"],
        Marker(7),
        None,
        pd.DataFrame({1: [1, 2], 2: [3, 4]}),  # non-string column labels
        pd.DataFrame({"mixed": [1, "a", 2.5]}),  # a column Arrow cannot type
        pd.DataFrame({"tags": [[1], [2, 3]]}),  # lists would come back as numpy arrays
        pd.DataFrame({"t": pd.to_datetime(["2020-01-01"]).astype("datetime64[s]")}),  # as ms
        pd.DataFrame({"c": pd.Categorical([1, 2])}),  # integer categories come back as ints
        pd.DataFrame({"a": [1, 2]}, index=pd.date_range("2020", periods=2)),  # index freq
        pl.Series("s", [1, 2, 3]),
    ],
    ids=[
        "dict",
        "list",
        "object",
        "none",
        "pandas-int-labels",
        "pandas-mixed",
        "pandas-lists",
        "pandas-seconds",
        "pandas-int-categories",
        "pandas-index-freq",
        "series",
    ],
)
def test_other_objects_fall_back_to_cloudpickle(serializer, obj) -> None:
    blob = serializer.dumps(obj)
    assert header(blob)["encoding"] == "pickle"
    assert header(blob)["kind"] == "object"
    loaded = serializer.loads(blob)
    assert type(loaded) is type(obj)
    if isinstance(obj, pd.DataFrame):
        pd.testing.assert_frame_equal(loaded, obj)
    elif isinstance(obj, pl.Series):
        assert loaded.equals(obj)
    else:
        assert loaded == obj


def test_unstorable_object_message(serializer) -> None:
    frame = pl.DataFrame({"o": pl.Series([Marker(1), Marker(2)], dtype=pl.Object)})
    with pytest.raises(TypeError) as caught:
        serializer.dumps(frame)
    assert str(caught.value) == (
        "PolarsParquetSerializer cannot store a DataFrame: Parquet cannot hold it and "
        "cloudpickle failed (serializing data of type Object is not supported). Return a "
        "picklable value or a frame without Object columns (cast them to String or Struct), "
        "or turn off persistence with persist_result=False."
    )


def test_failing_lazy_query_raises_instead_of_storing_its_plan(serializer, tmp_path) -> None:
    lazy = pl.scan_parquet(tmp_path / "missing.parquet")
    with pytest.raises(FileNotFoundError):
        serializer.dumps(lazy)


def test_lazy_frame_is_stored_collected(serializer, tmp_path) -> None:
    path = tmp_path / "data.parquet"
    make_sales(100).write_parquet(path)
    blob = serializer.dumps(pl.scan_parquet(path).filter(pl.col("value") > 0))
    path.unlink()  # the stored result does not depend on the file any more
    assert_frame_equal(
        serializer.loads(blob).collect(), make_sales(100).filter(pl.col("value") > 0)
    )


def test_frame_subclass_keeps_its_type(serializer) -> None:
    class Tagged(pl.DataFrame):
        pass

    frame = Tagged({"a": [1, 2]})
    blob = serializer.dumps(frame)
    assert header(blob)["encoding"] == "pickle"
    assert type(serializer.loads(blob)) is Tagged


def test_empty_frames(serializer) -> None:
    for frame in (pl.DataFrame(), pl.DataFrame({"a": []}, schema={"a": pl.Int64})):
        assert_frame_equal(serializer.loads(serializer.dumps(frame)), frame)


# ---------------------------------------------------------------- hypothesis round trips


@HYPOTHESIS
@given(frame=dataframes(max_size=30, allow_null=True))
def test_polars_frames_round_trip(frame: pl.DataFrame) -> None:
    serializer = PolarsParquetSerializer()
    blob = serializer.dumps(frame)
    assert header(blob)["encoding"] == "parquet"
    assert_frame_equal(serializer.loads(blob), frame)
    assert_frame_equal(serializer.loads(serializer.dumps(frame.lazy())).collect(), frame)


@HYPOTHESIS
@given(frame=dataframes(max_size=30, allow_null=True))
def test_arrow_tables_round_trip_with_their_exact_schema(frame: pl.DataFrame) -> None:
    try:
        table = frame.to_arrow()
    except Exception:  # some Polars dtypes (Int128, extensions) have no Arrow export
        assume(False)
    serializer = PolarsParquetSerializer()
    loaded = serializer.loads(serializer.dumps(table))
    assert type(loaded) is pa.Table
    assert loaded.schema.equals(table.schema, check_metadata=True)
    # Compare values through Polars: Arrow's own equals treats NaN != NaN.
    assert_frame_equal(pl.from_arrow(loaded), pl.from_arrow(table))


@HYPOTHESIS
@given(frame=dataframes(max_size=30, allow_null=True, allowed_dtypes=PANDAS_DTYPES))
def test_pandas_frames_round_trip(frame: pl.DataFrame) -> None:
    """Either as Parquet or, for dtypes Parquet would change, pickled: exact either way."""
    pandas_frame = frame.to_pandas()
    serializer = PolarsParquetSerializer()
    pd.testing.assert_frame_equal(serializer.loads(serializer.dumps(pandas_frame)), pandas_frame)


# ---------------------------------------------------------------- corruption


@pytest.fixture(scope="module")
def stored_blob() -> bytes:
    return PolarsParquetSerializer().dumps(make_sales(2_000))


@HYPOTHESIS
@given(data=st.data())
def test_any_truncation_is_rejected(stored_blob: bytes, data) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(stored_blob) - 1), label="cut")
    with pytest.raises(CorruptResultError):
        PolarsParquetSerializer().loads(stored_blob[:cut])


@HYPOTHESIS
@given(data=st.data())
def test_any_changed_payload_character_is_rejected(stored_blob: bytes, data) -> None:
    start = stored_blob.index(b"\n") + 1
    at = data.draw(st.integers(min_value=start, max_value=len(stored_blob) - 1), label="at")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != stored_blob[at]]))
    damaged = stored_blob[:at] + bytes([replacement]) + stored_blob[at + 1 :]
    try:
        same = base64.b64decode(damaged[start:]) == base64.b64decode(stored_blob[start:])
    except ValueError:
        same = False
    assume(not same)  # a change in the unused bits of the last base64 digit
    with pytest.raises(CorruptResultError):
        PolarsParquetSerializer().loads(damaged)


def test_truncated_message(stored_blob: bytes) -> None:
    head = header(stored_blob)
    start = stored_blob.index(b"\n") + 1
    cut = start + 400  # a whole number of base64 quanta: it decodes, but is short
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(stored_blob[:cut])
    assert str(caught.value) == (
        f"polars-parquet result of kind 'polars.DataFrame' is truncated: expected "
        f"{head['size']} payload bytes, found 300. The stored object cannot be used: re-run "
        "the task with refresh_cache=True, or delete the object, to replace it."
    )
    assert isinstance(caught.value, (PrefectETLBlocksError, ValueError))


def test_foreign_blob_message() -> None:
    blob = PickleSerializer().dumps({"a": 1})
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(blob)
    assert str(caught.value).startswith(
        "Stored result is not a polars-parquet envelope (it starts with "
    )
    assert "re-run the task with refresh_cache=True to replace it." in str(caught.value)


def test_newer_envelope_version_message(stored_blob: bytes) -> None:
    blob = stored_blob.replace(b'"version":1', b'"version":2', 1)
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(blob)
    assert str(caught.value) == (
        "polars-parquet result has envelope version 2, but this prefect-etl-blocks reads "
        "version 1. Upgrade prefect-etl-blocks in this process to the version that wrote it."
    )
