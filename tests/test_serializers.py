"""``PolarsParquetSerializer``: frame round trips (hypothesis), the envelope, corruption checks
and registration in fresh processes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import pickle
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
from pydantic import SecretBytes, SecretStr

from prefect_etl_blocks import PolarsParquetSerializer
from prefect_etl_blocks.errors import CorruptResultError, DataError, PrefectETLBlocksError
from prefect_etl_blocks.serializers import SigningKeyError, check_stored_record, signing_key_id
from tests.fixtures.data import make_sales
from tests.fixtures.forgery import LeavesMarker

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


# ---------------------------------------------------------------- signing

KEY = "petl-test-signing-key-4f1c9a2b7e30d8c6"
OTHER_KEY = "petl-other-signing-key-0b9e8d7c6a5f4e3d"
ENV = "PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY"


@pytest.fixture(autouse=True)
def _no_signing_key_from_the_environment(monkeypatch) -> None:
    """Tests set the key themselves; one left in the caller's environment must not leak in."""
    monkeypatch.delenv(ENV, raising=False)


def signed(key: str = KEY) -> PolarsParquetSerializer:
    return PolarsParquetSerializer(signing_key=SecretStr(key))


def envelope(payload: bytes, kind: str, encoding: str, compression: str | None, **extra) -> bytes:
    """An envelope built by hand, as someone who can write the bucket would: the size and
    SHA-256 are right, so only a signature can tell it from a genuine result."""
    head = {
        "petl": "polars-parquet",
        "version": 1,
        "kind": kind,
        "encoding": encoding,
        "compression": compression,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        **extra,
    }
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + base64.b64encode(payload)


def forged_pickle(marker, **extra) -> bytes:
    return envelope(pickle.dumps(LeavesMarker(marker)), "object", "pickle", None, **extra)


def forged_frame(frame: pl.DataFrame, **extra) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return envelope(buffer.getvalue(), "polars.DataFrame", "parquet", "zstd", **extra)


def test_signed_envelope_header_and_the_exact_signed_bytes() -> None:
    blob = signed().dumps(make_sales(100))
    line, body = blob.split(b"\n", 1)
    head = header(blob)
    assert list(head)[-3:] == ["alg", "kid", "hmac"]
    assert head["alg"] == "hmac-sha256"
    assert head["kid"] == hashlib.sha256(KEY.encode()).hexdigest()[:8]
    # Signed bytes: the header line without its last member `,"hmac":"..."`, "\n", the base64.
    unsigned_line = line[: line.rindex(b',"hmac":')] + b"}"
    expected = hmac.new(KEY.encode(), unsigned_line + b"\n" + body, hashlib.sha256).hexdigest()
    assert head["hmac"] == expected
    assert KEY.encode() not in blob


def test_signing_key_as_secret_bytes() -> None:
    serializer = PolarsParquetSerializer(signing_key=SecretBytes(KEY.encode()))
    blob = serializer.dumps({"a": 1})
    assert header(blob)["kid"] == signing_key_id(KEY)
    assert signed().loads(blob) == {"a": 1}


@HYPOTHESIS
@given(frame=dataframes(max_size=30, allow_null=True))
def test_signed_polars_frames_round_trip(frame: pl.DataFrame) -> None:
    serializer = signed()
    blob = serializer.dumps(frame)
    assert header(blob)["encoding"] == "parquet" and "hmac" in header(blob)
    assert_frame_equal(serializer.loads(blob), frame)
    assert_frame_equal(serializer.loads(serializer.dumps(frame.lazy())).collect(), frame)


@pytest.mark.parametrize("obj", [{"rows": 3}, Marker(7), None, pl.Series("s", [1, 2])])
def test_signed_non_frame_objects_round_trip(obj) -> None:
    serializer = signed()
    blob = serializer.dumps(obj)
    assert header(blob)["encoding"] == "pickle" and "hmac" in header(blob)
    loaded = serializer.loads(blob)
    assert loaded.equals(obj) if isinstance(obj, pl.Series) else loaded == obj


def test_signed_envelopes_stay_readable_without_a_key() -> None:
    """Old readers ignore the extra members; a reader without a key checks only the SHA-256."""
    frame = make_sales(50)
    assert_frame_equal(PolarsParquetSerializer().loads(signed().dumps(frame)), frame)


def test_environment_key_is_read_at_every_call(monkeypatch) -> None:
    serializer = PolarsParquetSerializer()  # built before the key is set, as Prefect does
    unsigned = serializer.dumps({"a": 1})
    monkeypatch.setenv(ENV, KEY)
    blob = serializer.dumps({"a": 1})
    assert header(blob)["kid"] == signing_key_id(KEY)
    assert serializer.loads(blob) == {"a": 1}
    with pytest.raises(CorruptResultError, match="is not signed"):
        serializer.loads(unsigned)
    monkeypatch.setenv(ENV, "")  # set to nothing: no key
    assert "hmac" not in header(serializer.dumps({"a": 1}))
    assert serializer.loads(unsigned) == {"a": 1}


def test_the_field_wins_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(ENV, OTHER_KEY)
    blob = signed(KEY).dumps({"a": 1})
    assert header(blob)["kid"] == signing_key_id(KEY)
    with pytest.raises(CorruptResultError, match="from the environment variable"):
        PolarsParquetSerializer().loads(blob)
    assert signed(KEY).loads(blob) == {"a": 1}


def test_unsigned_result_is_refused_with_a_key() -> None:
    blob = PolarsParquetSerializer().dumps(make_sales(20))
    with pytest.raises(CorruptResultError) as caught:
        signed().loads(blob)
    assert str(caught.value) == (
        "polars-parquet result of kind 'polars.DataFrame' is not signed, but this process has "
        f"a result signing key (key id {signing_key_id(KEY)}, from the serializer's "
        "signing_key). It was written before the key was set, by a process without the key, "
        "or by someone else who can write the result storage. Unsigned results from before "
        "the key was set must be re-computed. Nothing in it was decoded. Give every process "
        "that writes or reads these results the same key "
        "(PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY or signing_key), then re-run the task with "
        "refresh_cache=True, or delete the object, to replace it."
    )
    assert isinstance(caught.value, DataError)


def test_wrong_key_is_refused_with_both_key_ids(monkeypatch) -> None:
    blob = signed(OTHER_KEY).dumps(make_sales(20))
    monkeypatch.setenv(ENV, KEY)
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(blob)
    assert str(caught.value).startswith(
        f"polars-parquet result of kind 'polars.DataFrame' is signed with key id "
        f"{signing_key_id(OTHER_KEY)}, but this process's key (from the environment variable "
        f"PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY) has key id {signing_key_id(KEY)}. The writer "
        "used another key (keys differ between workers, or the key was rotated). Nothing in "
        "it was decoded."
    )


def test_forged_frame_with_a_correct_sha256_is_refused() -> None:
    genuine = make_sales(200)
    forged = forged_frame(genuine.with_columns(pl.col("value") * 100))
    # Without a key the forgery is indistinguishable from a genuine result: the threat.
    assert not PolarsParquetSerializer().loads(forged).equals(genuine)
    with pytest.raises(CorruptResultError, match="is not signed"):
        signed().loads(forged)
    # Copying a genuine envelope's signature members onto the forgery does not help.
    members = {k: header(signed().dumps(genuine))[k] for k in ("alg", "kid", "hmac")}
    with pytest.raises(CorruptResultError) as caught:
        signed().loads(forged_frame(genuine.with_columns(pl.col("value") * 100), **members))
    assert "has a signature that does not match its contents" in str(caught.value)


def test_forged_pickle_is_refused_before_anything_is_unpickled(tmp_path) -> None:
    control = tmp_path / "control-marker"
    PolarsParquetSerializer().loads(forged_pickle(control))  # without a key the code runs
    assert control.exists()

    marker = tmp_path / "marker"
    attacker = {"alg": "hmac-sha256", "kid": signing_key_id(KEY), "hmac": "0" * 64}
    forgeries = {
        "unsigned": forged_pickle(marker),
        "own-key-id-bad-mac": forged_pickle(marker, **attacker),
        "attackers-key-id": forged_pickle(marker, **{**attacker, "kid": signing_key_id("x" * 32)}),
    }
    for name, blob in forgeries.items():
        with pytest.raises(CorruptResultError, match="Nothing in it was decoded"):
            signed().loads(blob)
        assert not marker.exists(), name


def test_signature_copied_from_a_genuine_envelope_does_not_cover_a_pickle(tmp_path) -> None:
    """What someone without the key can do with a genuinely signed result: refused."""
    marker = tmp_path / "marker"
    genuine = header(signed(OTHER_KEY).dumps({"placeholder": True}))
    forged = forged_pickle(marker, **{k: genuine[k] for k in ("alg", "kid", "hmac")})
    with pytest.raises(CorruptResultError, match="is signed with key id"):
        signed(KEY).loads(forged)
    with pytest.raises(CorruptResultError, match="does not match its contents"):
        signed(OTHER_KEY).loads(forged)
    assert not marker.exists()


def test_changing_any_header_member_breaks_the_signature() -> None:
    blob = signed().dumps(make_sales(50))
    for old, new in [(b'"zstd"', b'"gzip"'), (b'"polars.DataFrame"', b'"pyarrow.Table"')]:
        with pytest.raises(CorruptResultError, match="does not match its contents"):
            signed().loads(blob.replace(old, new, 1))


def test_changed_payload_is_refused_before_it_is_decoded() -> None:
    blob = signed().dumps(make_sales(50))
    start = blob.index(b"\n") + 1
    flipped = blob[:start] + (b"B" if blob[start : start + 1] != b"B" else b"C") + blob[start + 1 :]
    with pytest.raises(CorruptResultError, match="does not match its contents"):
        signed().loads(flipped)


def test_the_key_appears_in_no_repr_dump_or_error(monkeypatch, capsys) -> None:
    serializer = signed()
    texts = [repr(serializer), str(serializer), serializer.model_dump_json()]
    texts.append(json.dumps(serializer.model_dump()))
    texts.append(json.dumps(serializer.model_dump(mode="json")))
    texts.append(ResultRecordMetadata(serializer=serializer).dump_bytes().decode())
    record = ResultRecord(
        result=make_sales(5), metadata=ResultRecordMetadata(serializer=serializer)
    )
    texts.append(record.serialize().decode())
    for wrong in (PolarsParquetSerializer().dumps(1), signed(OTHER_KEY).dumps(1)):
        with pytest.raises(CorruptResultError) as caught:
            serializer.loads(wrong)
        texts.append(str(caught.value))
    for bad in (KEY, SecretStr(KEY[:10])):
        with pytest.raises(ValueError) as caught:
            PolarsParquetSerializer(signing_key=bad)
        texts += [str(caught.value), repr(caught.value)]
    monkeypatch.setenv(ENV, KEY[:10])
    with pytest.raises(SigningKeyError) as caught:
        PolarsParquetSerializer().dumps(1)
    texts.append(str(caught.value))
    texts.append(capsys.readouterr().out)
    assert "signing_key" not in serializer.model_dump()
    for text in texts:
        assert KEY not in text and KEY[:10] not in text, text


def test_plain_string_key_is_refused_so_stored_metadata_cannot_choose_it() -> None:
    with pytest.raises(ValueError, match="signing_key takes a pydantic SecretStr or SecretBytes"):
        PolarsParquetSerializer(signing_key=KEY)
    # What someone who can write the bucket would try: metadata that brings its own key.
    forged = json.dumps({"serializer": {"type": "polars-parquet", "signing_key": KEY}})
    with pytest.raises(ValueError, match="not a str"):
        ResultRecordMetadata.load_bytes(forged.encode())


def test_short_keys_are_refused(monkeypatch) -> None:
    with pytest.raises(ValueError, match="is 15 bytes long; use a random key of at least 16"):
        PolarsParquetSerializer(signing_key=SecretStr("k" * 15))
    monkeypatch.setenv(ENV, "k" * 15)
    with pytest.raises(SigningKeyError) as caught:
        PolarsParquetSerializer().loads(
            PolarsParquetSerializer(signing_key=SecretStr(KEY)).dumps(1)
        )
    assert str(caught.value).startswith(
        "The result signing key from the environment variable "
        "PREFECT_ETL_BLOCKS_RESULT_SIGNING_KEY is 15 bytes long"
    )
    assert isinstance(caught.value, DataError)


# ---------------------------------------------------------------- defensive header


def _header_line(**members) -> bytes:
    return json.dumps(members, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "line, detail",
    [
        (
            b'{"petl":"polars-parquet","version":1,"kind":"polars.DataFrame","encoding":"parquet",'
            b'"encoding":"pickle","compression":null,"size":1,"sha256":"00"}',
            "member 'encoding' appears twice",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":1.0,"sha256":"00"}',
            "the number 1.0 is not allowed in the header",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":NaN,"sha256":"00"}',
            "NaN is not allowed in the header",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":1,"sha256":"00","exec":"x"}',
            "unknown header members ['exec']",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"polars.DataFrame","encoding":"pickle",'
            b'"compression":null,"size":1,"sha256":"00"}',
            "encoding 'pickle' does not go with kind 'polars.DataFrame'",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"marshal",'
            b'"compression":null,"size":1,"sha256":"00"}',
            "unknown encoding 'marshal'",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":true,"sha256":"00"}',
            "size True is not a byte count",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":1,"sha256":"00"}',
            "sha256 is not 64 lowercase hex digits",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"polars.DataFrame",'
            b'"encoding":"parquet","compression":"lzma","size":1,"sha256":"00"}',
            "unknown compression 'lzma'",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":1,"sha256":"' + b"0" * 64 + b'","alg":"hmac-md5",'
            b'"kid":"00000000","hmac":"' + b"0" * 64 + b'"}',
            "unknown signature algorithm 'hmac-md5'",
        ),
        (
            b'{"petl":"polars-parquet","version":1,"kind":"object","encoding":"pickle",'
            b'"compression":null,"size":1,"sha256":"' + b"0" * 64 + b'","kid":"00000000"}',
            "signature members ['kid'] without ['alg', 'hmac']",
        ),
        (b'{"petl":"polars-parquet","version":"1"}', "version '1' is not an integer"),
        (b'{"petl":"polars-parquet"\xff}', "'ascii' codec can't decode byte 0xff"),
    ],
    ids=[
        "duplicate-member",
        "float",
        "nan",
        "unknown-member",
        "pickle-for-a-frame-kind",
        "unknown-encoding",
        "bool-size",
        "bad-sha256",
        "unknown-compression",
        "unknown-algorithm",
        "partial-signature",
        "string-version",
        "not-ascii",
    ],
)
def test_header_allow_list_refuses_before_decoding(tmp_path, line, detail) -> None:
    marker = tmp_path / "marker"
    blob = line + b"\n" + base64.b64encode(pickle.dumps(LeavesMarker(marker)))
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(blob)
    assert str(caught.value).startswith(
        f"polars-parquet result has an unreadable header ({detail}"
    ), str(caught.value)
    assert not marker.exists()


def test_unknown_kind_asks_for_an_upgrade() -> None:
    blob = envelope(b"x", "polars.Series", "parquet", "zstd")
    with pytest.raises(CorruptResultError) as caught:
        PolarsParquetSerializer().loads(blob)
    assert str(caught.value) == (
        "polars-parquet result has unknown kind 'polars.Series'. Upgrade prefect-etl-blocks in "
        "this process to the version that wrote it."
    )


# ---------------------------------------------------------------- stored records


def test_check_stored_record_does_nothing_without_a_key() -> None:
    record = ResultRecord(result={"a": 1}, metadata=ResultRecordMetadata())  # Prefect's pickle
    check_stored_record(record.serialize())
    check_stored_record(b"anything at all")


def test_check_stored_record_passes_what_signing_protects(monkeypatch) -> None:
    monkeypatch.setenv(ENV, KEY)
    serializer = PolarsParquetSerializer(compression="gzip", compression_level=5)
    record = ResultRecord(
        result=make_sales(5), metadata=ResultRecordMetadata(serializer=serializer)
    )
    check_stored_record(record.serialize())
    check_stored_record(record.metadata.dump_bytes())  # metadata kept apart (key_storage)
    check_stored_record(serializer.dumps(make_sales(5)))  # the bare envelope beside it


@pytest.mark.parametrize(
    "content, named",
    [
        (
            ResultRecord(result={"a": 1}, metadata=ResultRecordMetadata()).serialize(),
            "names the serializer 'pickle'",
        ),
        (
            json.dumps(
                {"metadata": {"serializer": {"type": "polars-parquet", "signing_key": "x" * 32}}}
            ).encode(),
            "names a polars-parquet serializer with the settings ['signing_key', 'type']",
        ),
        (
            b'{"metadata":{"serializer":{"type":"polars-parquet"}},'
            b'"metadata":{"serializer":{"type":"pickle"}}}',
            "names no serializer this library can check",
        ),
        (b"\x80\x04K\x01.", "names no serializer this library can check"),
    ],
    ids=["prefects-pickle", "own-key-in-metadata", "duplicate-metadata", "not-json"],
)
def test_check_stored_record_refuses_what_no_signature_protects(monkeypatch, content, named):
    monkeypatch.setenv(ENV, KEY)
    with pytest.raises(CorruptResultError) as caught:
        check_stored_record(content, "s3://bucket/key")
    assert str(caught.value).startswith(f"s3://bucket/key {named}, but a result signing key is set")
    assert str(caught.value).endswith(
        "Nothing in it was decoded. Persist every task and flow result in this storage with "
        'result_serializer="polars-parquet" (dataframe_result_options does), then re-run the '
        "task with refresh_cache=True, or delete the object, to replace it."
    )
