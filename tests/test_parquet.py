"""ParquetSource on real files and on moto's S3 server over HTTP."""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from prefect_etl_blocks import ParquetSource
from prefect_etl_blocks.errors import (
    CorruptParquetError,
    InvalidFilterError,
    SchemaMismatchError,
    SourceNotFoundError,
)


def test_single_file_read_matches_polars(parquet_file: Path, sales_frame: pl.DataFrame) -> None:
    assert_frame_equal(ParquetSource(path=str(parquet_file)).read(), sales_frame)


def test_folder_and_glob_match_the_same_files(parquet_dir: Path, sales_frame: pl.DataFrame) -> None:
    by_folder = ParquetSource(path=str(parquet_dir))
    by_glob = ParquetSource(path=str(parquet_dir / "part-*.parquet"))
    assert by_folder.files() == by_glob.files() == sorted(str(p) for p in parquet_dir.glob("*.parquet"))
    assert_frame_equal(by_glob.read().sort("order_id"), sales_frame)


def test_columns_and_filter_are_applied(parquet_file: Path, sales_frame: pl.DataFrame) -> None:
    source = ParquetSource(path=str(parquet_file), columns=["order_id", "value"], filter="value > 0 AND region = 'EU'")
    expected = sales_frame.filter((pl.col("value") > 0) & (pl.col("region") == "EU")).select("order_id", "value")
    assert_frame_equal(source.read(), expected)
    plan = source.scan().explain()
    assert "SELECTION" in plan.upper() or "FILTER" in plan.upper()


def test_hive_partitions_become_columns(hive_dir: Path, sales_frame: pl.DataFrame) -> None:
    frame = ParquetSource(path=str(hive_dir), hive_partitioning=True, filter="region = 'US'").read()
    assert set(frame["region"].unique()) == {"US"}
    assert frame.height == sales_frame.filter(pl.col("region") == "US").height


def test_iter_batches_is_bounded_and_complete(parquet_dir: Path, sales_frame: pl.DataFrame) -> None:
    batches = list(ParquetSource(path=str(parquet_dir)).iter_batches(rows=128))
    assert all(b.height <= 128 for b in batches) and len(batches) >= sales_frame.height // 128
    assert_frame_equal(pl.concat(batches).sort("order_id"), sales_frame)
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        next(ParquetSource(path=str(parquet_dir)).iter_batches(rows=0))


def test_fingerprint_is_stable_and_changes_with_the_data(parquet_dir: Path) -> None:
    source = ParquetSource(path=str(parquet_dir))
    first = source.fingerprint()
    assert first == ParquetSource(path=str(parquet_dir)).fingerprint()
    time.sleep(0.01)
    target = parquet_dir / "part-0.parquet"
    pl.DataFrame({"order_id": [1]}).write_parquet(target)
    changed = source.fingerprint()
    assert changed != first
    (parquet_dir / "part-9.parquet").write_bytes(target.read_bytes())
    assert source.fingerprint() != changed
    os.remove(parquet_dir / "part-9.parquet")
    assert source.fingerprint() == changed


def test_missing_file_and_empty_glob_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(SourceNotFoundError, match=f"ParquetSource path '{missing}' matched no Parquet files"):
        ParquetSource(path=str(missing)).read()
    glob = str(tmp_path / "*.parquet")
    with pytest.raises(SourceNotFoundError, match="ParquetSource glob .* matched no Parquet files"):
        ParquetSource(path=glob).files()


def test_corrupt_file_is_named(parquet_dir: Path) -> None:
    bad = parquet_dir / "part-1.parquet"
    bad.write_bytes(b"PAR1 garbage")
    with pytest.raises(CorruptParquetError, match=f"{bad} is not a readable Parquet file"):
        ParquetSource(path=str(parquet_dir)).read()


def test_expected_schema_mismatch_names_file_column_and_dtypes(parquet_dir: Path) -> None:
    with pytest.raises(SchemaMismatchError, match=r"part-0.parquet: column 'value' has dtype Float64, expected Int64"):
        ParquetSource(path=str(parquet_dir), expected_schema={"value": "Int64"}).read()
    with pytest.raises(SchemaMismatchError, match=r"expected column 'price' \(Float64\) is missing"):
        ParquetSource(path=str(parquet_dir), expected_schema={"price": "Float64"}).read()
    ok = ParquetSource(path=str(parquet_dir), expected_schema={"value": "float64", "day": "Date", "category": "Utf8"})
    assert ok.read().height > 0
    with pytest.raises(ValueError, match="is not a Polars dtype name"):
        ParquetSource(path="x", expected_schema={"a": "Integerish"})


def test_bad_filters_are_clear(parquet_file: Path) -> None:
    with pytest.raises(ValueError, match="is not a valid SQL predicate"):
        ParquetSource(path=str(parquet_file), filter="value >")
    with pytest.raises(ValueError, match="is not a valid SQL predicate"):
        ParquetSource(path=str(parquet_file), filter="value > 0; DROP TABLE x")
    with pytest.raises(InvalidFilterError, match=r"unknown column\(s\) \['nope'\]"):
        ParquetSource(path=str(parquet_file), filter="nope > 1").read()
    with pytest.raises(SchemaMismatchError, match=r"no column\(s\) \['nope'\]"):
        ParquetSource(path=str(parquet_file), columns=["nope"]).read()


def test_s3_object_prefix_and_glob(s3_client, bucket: str, parquet_object: str, aws_credentials, sales_frame: pl.DataFrame, tmp_path: Path) -> None:
    second = tmp_path / "second.parquet"
    sales_frame.head(10).write_parquet(second)
    s3_client.upload_file(str(second), bucket, "raw/more.parquet")
    s3_client.put_object(Bucket=bucket, Key="raw/readme.txt", Body=b"not data")
    one = ParquetSource(path=parquet_object, aws_credentials=aws_credentials)
    assert_frame_equal(one.read(), sales_frame)
    prefix = ParquetSource(path=f"s3://{bucket}/raw", aws_credentials=aws_credentials)
    assert prefix.files() == [f"s3://{bucket}/raw/more.parquet", f"s3://{bucket}/raw/sales.parquet"]
    assert prefix.read().height == sales_frame.height + 10
    glob = ParquetSource(path=f"s3://{bucket}/raw/s*.parquet", aws_credentials=aws_credentials, filter="value > 0")
    assert glob.read().height == sales_frame.filter(pl.col("value") > 0).height
    first = glob.fingerprint()
    s3_client.upload_file(str(second), bucket, "raw/sales.parquet")
    assert glob.fingerprint() != first
    with pytest.raises(SourceNotFoundError, match=f"s3://{bucket}/missing/"):
        ParquetSource(path=f"s3://{bucket}/missing/", aws_credentials=aws_credentials).read()


def test_s3_storage_options_without_credentials_block(s3_server, parquet_object: str, sales_frame: pl.DataFrame) -> None:
    from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY

    source = ParquetSource(
        path=parquet_object,
        storage_options={
            "aws_endpoint_url": s3_server.endpoint_url,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_region": REGION,
            "aws_allow_http": "true",
        },
    )
    assert source.read().height == sales_frame.height
    assert SECRET_KEY not in repr(source) and SECRET_KEY not in str(source.model_dump())


def test_unreachable_object_store_is_transient_not_corrupt_on_every_read_path() -> None:
    """A network failure is a TransientError (retried), never CorruptParquetError."""
    import socket

    from prefect_aws import AwsCredentials

    from prefect_etl_blocks.errors import SourceUnavailableError, TransientError

    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    credentials = AwsCredentials(
        aws_access_key_id="petl-test", aws_secret_access_key="petl-test-secret", region_name="us-east-1",
        aws_client_parameters={"endpoint_url": f"http://127.0.0.1:{port}"},
    )
    for path in ("s3://petl-absent/x.parquet", "s3://petl-absent/prefix/", "s3://petl-absent/*.parquet"):
        source = ParquetSource(path=path, aws_credentials=credentials)
        for read in (source.read, source.validate_data, source.files):
            with pytest.raises(SourceUnavailableError, match="the object store did not answer") as info:
                read()
            assert isinstance(info.value, TransientError) and path in str(info.value)
