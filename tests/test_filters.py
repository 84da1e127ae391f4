"""The filter language (prefect_etl_blocks.filters): hostile filters are refused with a message
naming the offending part, on every path; allowed filters mean the same rows in Polars and DuckDB
(hypothesis against real DuckDB)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing.parametric import column, dataframes

from prefect_etl_blocks import DuckDBConnection, ParquetSource
from prefect_etl_blocks.errors import DataError, InvalidFilterError, TransientError
from prefect_etl_blocks.filters import (
    ALLOWED_FUNCTIONS,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_IN_ITEMS,
    parse_filter,
)

SECRET = "S3CR3T-PIN-7731"
SUB = "(SELECT max(pin) FROM read_csv('/srv/secret.csv'))"

# (hostile filter, the part the error message must name)
HOSTILE: list[tuple[str, str]] = [
    # subqueries in every position
    (f"{SUB} = value", "SELECT"),
    (f"value = {SUB}", "SELECT"),
    (f"value IN (1, {SUB})", "SELECT"),
    ("value IN (SELECT pin FROM read_csv('/srv/secret.csv'))", "SELECT"),
    (f"lower({SUB}) = 'x'", "SELECT"),
    (f"coalesce(value, {SUB}) > 0", "SELECT"),
    (f"value BETWEEN {SUB} AND 10", "SELECT"),
    (f"value BETWEEN 0 AND {SUB}", "SELECT"),
    (f"NOT {SUB}", "SELECT"),
    (f"value > 0 AND ({SUB}) IS NOT NULL", "SELECT"),
    (f"value LIKE {SUB}", "'(' at position"),
    ("EXISTS (SELECT 1 FROM read_text('/srv/secret.csv'))", "EXISTS"),
    ("value = ANY (SELECT 1)", "ANY"),
    ("value > 0 UNION SELECT 1", "UNION"),
    ("select = 1", "select"),
    ("WITH x AS (SELECT 1) SELECT 1", "WITH"),
    # table functions and other functions that are not on the allow-list
    *[
        (f"{fn}('/srv/secret.csv') IS NOT NULL", f"function {fn}()")
        for fn in (
            "read_csv", "read_csv_auto", "read_text", "read_blob", "read_json", "read_json_auto",
            "read_ndjson", "read_parquet", "parquet_scan", "parquet_metadata", "glob",
            "sniff_csv", "getenv", "current_setting", "query", "query_table", "sqlite_scan",
            "duckdb_secrets", "which_secret", "load_extension", "read_xlsx", "concat", "format",
            "regexp_matches", "strftime", "hash", "random", "nextval", "setseed",
        )
    ],
    ("value = getenv('AWS_SECRET_ACCESS_KEY')", "function getenv()"),
    ("READ_CSV('/srv/secret.csv') IS NULL", "function READ_CSV()"),
    ("lower(upper(read_text('/srv/secret.csv'))) = 'x'", "function read_text()"),
    ("abs(length(getenv('HOME'))) > 0", "function getenv()"),
    ("main.read_csv('/srv/secret.csv') IS NULL", "'.'"),
    ("system.main.getenv('HOME') IS NULL", "'.'"),
    ("t.value > 0", "'.'"),
    # comments
    ("value > 0 -- AND region = 'EU'", "'--'"),
    ("value > 0 --", "'--'"),
    ("value > 0 /* hidden */ OR TRUE", "'/*'"),
    ("value > 0 */", "'*/'"),
    ("value--1 > 0", "'--'"),
    # statement separators and statements
    ("value > 0; COPY (SELECT 1) TO '/tmp/x.csv'", "';'"),
    ("value > 0;", "';'"),
    (";", "';'"),
    ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
    ("COPY secret FROM '/srv/secret.csv'", "COPY"),
    ("ATTACH '/srv/other.duckdb' AS o", "ATTACH"),
    ("PRAGMA database_list", "PRAGMA"),
    ("INSTALL httpfs", "INSTALL"),
    ("LOAD httpfs", "LOAD"),
    ("SET enable_external_access = true", "SET"),
    ("CALL pragma_version()", "CALL"),
    ("DROP TABLE t", "DROP"),
    # casts and other SQL constructs
    ("value::VARCHAR = '1'", "'::'"),
    ("CAST(value AS VARCHAR) = '1'", "CAST"),
    ("TRY_CAST(value AS INT) > 0", "TRY_CAST"),
    ("CASE WHEN value > 0 THEN TRUE END", "CASE"),
    ("region COLLATE nocase = 'eu'", "COLLATE"),
    ("interval '1 day' IS NULL", "interval"),
    ("E'\\x41' = region", "E (at position 1)"),
    ("region SIMILAR TO 'E.*'", "SIMILAR"),
    ("region GLOB 'E*'", "GLOB"),
    ("region LIKE 'E%' ESCAPE '!'", "ESCAPE"),
    ("value IS DISTINCT FROM 1", "'DISTINCT'"),
    # unicode look-alikes and invisible characters
    ("value \uff1d 1", "U+FF1D FULLWIDTH EQUALS SIGN"),
    ("value \uff1e 1", "U+FF1E"),
    ("\uff56alue > 1", "U+FF56"),
    ("v\u0430lue > 1", "U+0430 CYRILLIC SMALL LETTER A"),
    ("value > \u22121", "U+2212 MINUS SIGN"),
    ("value \u2265 1", "U+2265"),
    ("value >\u00a01", "U+00A0"),
    ("value > 1\u200b", "U+200B"),
    ("region = \u2018EU\u2019", "U+2018"),
    ("value > 0\uff1b DROP TABLE t", "U+FF1B"),
    ("region = 'EU\u202e'", "U+202E"),
    ('"val\u200bue" > 1', "U+200B"),
    ("region = 'EU\x00'", "U+0000"),
    ("value > 1\x0b", "U+000B"),
    # unknown operators and characters
    ("value >> 0", "'>>'"),
    ("value << 0", "'<<'"),
    ("value == 0", "'=='"),
    ("value <=> 0", "'<=>'"),
    ("value !> 0", "'!>'"),
    ("region || 'x' = 'EUx'", "'||'"),
    ("value ** 2 > 0", "'**'"),
    ("value ^ 2 > 0", "'^'"),
    ("region ~ 'E'", "'~'"),
    ("value & 1 = 1", "'&'"),
    ("value | 1 = 1", "'|'"),
    ("$1 > 0", "'$'"),
    ("? > 0", "'?'"),
    ("value[1] > 0", "'['"),
    ("{'a': 1} IS NULL", "'{'"),
    ("`value` > 0", "'`'"),
    ("x -> x > 0", "'->'"),
    ("value = 0x10", "'0x'"),
    ("value = 1_000", "'1_'"),
    ("value = 1e999", "'1e999'"),
    ("value = 99999999999999999999", "64 bits"),
    # empty, too long, too deep
    ("", "empty"),
    ("   \n\t", "empty"),
    ("value > 0 AND " * 400 + "TRUE", f"more than {MAX_FILTER_LENGTH}"),
    ("(" * (MAX_DEPTH + 1) + "value > 0" + ")" * (MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}"),
    ("NOT " * (MAX_DEPTH + 1) + "value > 0", f"deeper than {MAX_DEPTH}"),
    ("- " * (MAX_DEPTH + 1) + "value > 0", f"deeper than {MAX_DEPTH}"),
    ("value" + " + 1" * (MAX_DEPTH + 1) + " > 0", f"deeper than {MAX_DEPTH}"),
    ("lower(" * (MAX_DEPTH + 1) + "region" + ")" * (MAX_DEPTH + 1) + " = 'x'", f"deeper than {MAX_DEPTH}"),
    (f"value IN ({', '.join(['1'] * (MAX_IN_ITEMS + 1))})", f"more than {MAX_IN_ITEMS} values"),
    # malformed
    ("value >", "the end of the filter"),
    ("value > 0 AND", "the end of the filter"),
    ("(value > 0", "the end of the filter"),
    ("value > 0)", "')' at position 10"),
    ("value IN ()", "')' at position 11"),
    ("value IN (1,)", "')' at position 13"),
    ("value IN (region)", "literal values only"),
    ("value BETWEEN 1", "AND in BETWEEN"),
    ("region LIKE region", "'region' at position 13"),
    ("region LIKE 'E\\'", "backslash"),
    ("'unclosed = region", "not closed"),
    ('"unclosed > 0', "not closed"),
    ('"" > 0', 'empty column name ""'),
    ("'a' 'b' = region", "\"'b'\" at position 5"),
    ("value = 1 = 2", "'=' at position 11"),
    ("value > 0 IS NULL", "'IS' at position 11"),
    ("value IS 1", "NULL after IS"),
    ("value + 1", "not a condition"),
    ("1", "not a condition"),
    ("'EU'", "not a condition"),
    ("NULL", "always NULL"),
    ("DATE '2024-13-01' = day", "DATE '2024-13-01'"),
    ("TIMESTAMP '2024-01-01 25:00' = day", "TIMESTAMP '2024-01-01 25:00'"),
    ("DATE '2024-01-01+01' = day", "DATE '2024-01-01+01'"),
    ("round(value, 11) > 0", "round()'s digits"),
    ("round(value, digits) > 0", "round()'s digits"),
    ("lower(region, region) = 'x'", "lower() takes lower(text), not 2"),
    ("coalesce(value) > 0", "coalesce() takes"),
    ("lower() = 'x'", "lower() takes"),
    ("+value > 0", "'+' at position 1"),
    ("'EU' + 1 > 0", "arithmetic '+' on 'EU'"),
    ("NOT 'EU'", "NOT needs true/false operands"),
    ("1 AND TRUE", "AND needs true/false operands"),
    ("'x' LIKE 'x' AND 1 LIKE 'x'", "LIKE on 1, which is not text"),
    ("1 = 'x'", "different types"),
    ("DATE '2024-01-01' > 5", "different types"),
    ("year('2024-01-01') = 2024", "year() of '2024-01-01'"),
    ('"quoted"(1) > 0', "quoted column name"),
]


@pytest.mark.parametrize(("text", "named"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_hostile_filter_is_refused_naming_the_part(text: str, named: str) -> None:
    with pytest.raises(InvalidFilterError) as parsed:
        parse_filter(text)
    message = str(parsed.value)
    assert named in message, message
    assert message.startswith("filter ") and "is not a valid SQL predicate" in message
    # Construction refuses it with the same error (not pydantic's wrapper).
    with pytest.raises(InvalidFilterError) as built:
        ParquetSource(path="data.parquet", filter=text)
    assert str(built.value) == message
    assert isinstance(built.value, ValueError) and isinstance(built.value, DataError)
    assert not isinstance(built.value, TransientError)


def test_error_messages_say_how_to_fix() -> None:
    cases = {
        "read_csv('/x') IS NULL": "Filters may call only: lower(text), upper(text)",
        "value ＝ 1": "Use the plain ASCII '=' instead.",
        "value > 0 -- x": "Remove the comment.",
        "value::int > 0": "Compare with a literal of the column's type",
        "value > 0; DROP TABLE t": "Remove the ';' and everything after it",
        "order = 1": 'write it in double quotes: "order"',
        "": "Leave filter unset (None) to read every row",
        "a = b = c": "join them with AND / OR",
    }
    for text, fix in cases.items():
        with pytest.raises(InvalidFilterError, match=None) as info:
            parse_filter(text)
        assert fix in str(info.value), (text, str(info.value))


def test_over_long_filter_is_shown_truncated() -> None:
    text = "value > 0 AND " * 400 + "TRUE"
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(text)
    assert len(str(info.value)) < 400 and "..." in str(info.value)


def test_malformed_filter_raises_invalid_filter_error_not_pydantic() -> None:
    # The docs promise InvalidFilterError; pydantic wraps ValueErrors raised in validators.
    for build in (
        lambda: ParquetSource(path="x.parquet", filter="value >> 0"),
        lambda: ParquetSource.model_validate({"path": "x.parquet", "filter": "value >> 0"}),
    ):
        with pytest.raises(InvalidFilterError, match=r"unknown operator '>>' at position 7"):
            build()
    # Other validation errors are still pydantic's.
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ParquetSource(path="x.parquet", columns="not-a-list-of-names", filter="value > 0")  # type: ignore[arg-type]


def test_column_names_keywords_and_functions() -> None:
    f = parse_filter('"my col" >= 1 AND "weird ""q"" name" IS NULL AND type = \'a\' AND copy <> 2')
    assert f.columns() == ["copy", "my col", "type", 'weird "q" name']
    sql = f.to_sql()
    assert '"my col"' in sql and '"weird ""q"" name"' in sql and '"type"' in sql
    # Keywords and function names are case-insensitive; column names keep their case.
    g = parse_filter("LOWER(Region) like 'e%' and not Value between 1 and 2")
    assert g.columns() == ["Region", "Value"]
    assert g.to_sql() == (
        "((lower(\"Region\") LIKE 'e%' ESCAPE '\\') AND "
        "(NOT (\"Value\" BETWEEN CAST(1 AS BIGINT) AND CAST(2 AS BIGINT))))"
    )
    # DATE / TIMESTAMP are literals only before a string; otherwise they are columns.
    h = parse_filter("date = DATE '2024-02-29' OR timestamp < TIMESTAMP '2024-01-01T10:30:00.5'")
    assert h.columns() == ["date", "timestamp"]
    assert "TIMESTAMP '2024-01-01 10:30:00.500000'" in h.to_sql()
    assert sorted(ALLOWED_FUNCTIONS) == [
        "abs", "coalesce", "day", "length", "lower", "month", "round", "upper", "year",
    ]


def test_sql_is_rendered_from_values_never_from_the_text() -> None:
    f = parse_filter("region = 'it''s -- not a comment; SELECT 1' AND value > 000012.50 AND n = -0007")
    sql = f.to_sql()
    assert sql == (
        "((\"region\" = 'it''s -- not a comment; SELECT 1') AND "
        "((\"value\" > 12.5e0) AND (\"n\" = (-CAST(7 AS BIGINT)))))"
    )
    # The canonical text parses back to the same AST.
    assert parse_filter(f.to_text()).ast == f.ast
    con = duckdb.connect()
    rows = con.sql(
        "SELECT region FROM (VALUES ('it''s -- not a comment; SELECT 1', 13.0, -7), "
        f"('x', 20.0, -7)) AS t(region, value, n) WHERE {sql}"
    ).fetchall()
    assert rows == [("it's -- not a comment; SELECT 1",)]


def test_assigned_or_unvalidated_hostile_filter_is_refused_at_use() -> None:
    source = ParquetSource(path="x.parquet", filter="value > 0")
    source.filter = f"value = {SUB}"  # no validation on assignment
    with pytest.raises(InvalidFilterError, match="SELECT"):
        source.filter_sql()
    built = ParquetSource.model_construct(path="x.parquet", filter="getenv('HOME') IS NOT NULL")
    with pytest.raises(InvalidFilterError, match=r"function getenv\(\)"):
        built.filter_sql()


def test_schema_check_names_unknown_columns_and_types(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pl.DataFrame({"Value": [1.0], "region": ["EU"], "day": [dt.date(2024, 1, 1)]}).write_parquet(path)
    with pytest.raises(InvalidFilterError, match=r"unknown column\(s\) \['value'\].*did you mean 'Value'"):
        ParquetSource(path=str(path), filter="value > 0").read()
    with pytest.raises(InvalidFilterError, match=r"= compares column 'region' \(String\) with 1, which have different types"):
        ParquetSource(path=str(path), filter="region = 1").read()
    with pytest.raises(InvalidFilterError, match=r"Write dates as DATE 'YYYY-MM-DD'"):
        ParquetSource(path=str(path), filter="day > '2024-01-01'").read()
    with pytest.raises(InvalidFilterError, match=r"LIKE on column 'Value' \(Float64\), which is not text"):
        ParquetSource(path=str(path), filter="Value LIKE '1%'").read()
    with pytest.raises(InvalidFilterError, match=r"not a condition"):
        ParquetSource(path=str(path), filter="region").read()
    assert ParquetSource(path=str(path), filter="day = DATE '2024-01-01' AND Value > 0").read().height == 1


# ------------------------------------------------------------------ end to end, real files
ATTACKS = [
    "value = (SELECT max(pin) FROM read_csv('{secret}'))",
    "value IN (SELECT pin FROM read_csv('{secret}'))",
    "(SELECT content FROM read_text('{secret}')) LIKE '%7731%'",
    "length((SELECT content FROM read_blob('{secret}'))) > 0",
    "(SELECT count(*) FROM glob('{secret}')) > 0",
    "getenv('HOME') IS NOT NULL",
    "value > 0; COPY (SELECT * FROM read_csv('{secret}')) TO '{leak}'",
    "value > 0 OR read_csv_auto('{secret}') IS NOT NULL",
]


@pytest.fixture
def data_with_secret(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data.parquet"
    pl.DataFrame({"value": [1, 7731, -3], "region": ["EU", "US", "EU"]}).write_parquet(data)
    secret = tmp_path / "secret.csv"
    secret.write_text(f"pin\n7731\n{SECRET}\n")
    return data, secret


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_refused_on_every_path(attack: str, data_with_secret: tuple[Path, Path], tmp_path: Path) -> None:
    data, secret = data_with_secret
    leak = tmp_path / "leak.csv"
    text = attack.format(secret=secret, leak=leak)
    seen: list[str] = []

    def refused(call) -> None:  # noqa: ANN001
        with pytest.raises(InvalidFilterError) as info:
            call()
        seen.append(str(info.value))

    refused(lambda: ParquetSource(path=str(data), filter=text))
    refused(lambda: ParquetSource.model_validate({"path": str(data), "filter": text}))
    # A source whose filter was set without validation is refused by every reading path.
    source = ParquetSource(path=str(data), filter="value > 0")
    source.filter = text
    refused(source.read)
    refused(source.scan)
    refused(lambda: source.scan(validate=False))
    refused(lambda: next(source.iter_batches(rows=1)))
    refused(source.validate_data)
    refused(source.filter_sql)
    database = tmp_path / "x.duckdb"
    db = DuckDBConnection(database=str(database))
    refused(lambda: db.load_parquet(ParquetSource(path=str(data), filter=text), "fresh"))
    refused(lambda: db.load_parquet(source, "fresh"))
    assert db.load_frame(pl.DataFrame({"a": [1]}), "kept") == 1
    for mode in ("replace", "append"):
        refused(lambda mode=mode: db.load_parquet(source, "kept", mode=mode))

    assert len(seen) == 12
    assert all(SECRET not in m and "7731\n" not in m for m in seen)
    assert not leak.exists()
    with duckdb.connect(str(database)) as con:
        tables = sorted(r[0] for r in con.sql("SELECT table_name FROM information_schema.tables WHERE table_schema <> '_prefect_etl'").fetchall())
        assert tables == ["kept"]  # no "fresh", no source view left behind
        assert con.sql('SELECT * FROM "kept"').fetchall() == [(1,)]  # left as it was
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != secret:
            assert SECRET.encode() not in path.read_bytes(), path


def test_allowed_filter_gives_the_same_rows_on_polars_and_duckdb_readers(data_with_secret: tuple[Path, Path]) -> None:
    data, _ = data_with_secret
    for text in ["value % 2 = -1 OR region LIKE 'U_'", "value / 0 IS NULL AND value BETWEEN -3 AND 1", "NOT region IN ('US')"]:
        source = ParquetSource(path=str(data), filter=text)
        polars_rows = sorted(source.read().rows())
        con = duckdb.connect()
        duck_rows = sorted(con.read_parquet(str(data)).filter(source.filter_sql()).fetchall())
        assert polars_rows == duck_rows, text
    assert ParquetSource(path=str(data), filter="value % 2 = -1").read()["value"].to_list() == [-3]


def test_categorical_and_enum_columns_filter_as_text(tmp_path: Path) -> None:
    path = tmp_path / "cat.parquet"
    pl.DataFrame(
        {
            "c": pl.Series(["EU", "US", None, "eu"], dtype=pl.Categorical),
            "e": pl.Series(["a", "b", None, "a"], dtype=pl.Enum(["a", "b"])),
        }
    ).write_parquet(path)
    for text, expected in {
        "c LIKE 'E%'": ["EU"],
        "lower(c) = 'eu'": ["EU", "eu"],
        "c = 'EU' OR e = 'b'": ["EU", "US"],
        "length(e) = 1 AND upper(c) ILIKE 'eu'": ["EU", "eu"],
        "c IN ('US', 'x')": ["US"],
    }.items():
        source = ParquetSource(path=str(path), filter=text)
        assert sorted(source.read()["c"].cast(pl.String).to_list()) == expected, text
        duck = duckdb.connect().read_parquet(str(path)).filter(source.filter_sql()).fetchall()
        assert sorted(r[0] for r in duck) == expected, text


# ------------------------------------------------------------------ hypothesis: same rows
_ints = st.integers(-20, 20)
_strings = st.text(st.sampled_from(list("abAB%_ é")), max_size=4)
_dates = st.dates(dt.date(1999, 12, 25), dt.date(2000, 1, 10))


def _frames(*, nan: bool) -> st.SearchStrategy[pl.DataFrame]:
    floats = st.one_of(st.floats(-50, 50, allow_nan=False, width=32), st.sampled_from([0.0, -0.0]))
    return dataframes(
        [
            column("i", dtype=pl.Int64, strategy=_ints),
            column("j", dtype=pl.Int32, strategy=st.integers(-5, 5)),
            column("f", dtype=pl.Float64, strategy=st.one_of(floats, st.just(float("nan"))) if nan else floats),
            column("s", dtype=pl.String, strategy=_strings),
            column("d", dtype=pl.Date, strategy=_dates),
            column("b", dtype=pl.Boolean),
        ],
        min_size=0,
        max_size=12,
        allow_null=True,
    )


FRAMES = _frames(nan=True)
# DuckDB's Parquet reader trusts min/max statistics that (by the Parquet spec) leave NaN out, so
# on files it can keep or drop NaN rows wrongly (duckdb/duckdb#25521, open). Files are generated
# without NaN; test_duckdb_parquet_reader_nan_statistics_bug pins the upstream bug.
FILE_FRAMES = _frames(nan=False)


def _kw(draw: st.DrawFn, word: str) -> str:
    return draw(st.sampled_from([word, word.lower(), word.capitalize()]))


def _float_text(value: float) -> str:
    return repr(value)


@st.composite
def num_expr(draw: st.DrawFn, depth: int = 2) -> str:
    leaves = [
        st.sampled_from(["i", "j", "f", '"i"']),
        _ints.map(str),
        st.floats(-20, 20, allow_nan=False).map(_float_text),
        st.just("NULL"),
    ]
    if depth <= 0:
        return draw(st.one_of(leaves))
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return draw(st.one_of(leaves))
    if choice <= 6:
        op = draw(st.sampled_from(["+", "-", "*", "/", "%"]))
        return f"({draw(num_expr(depth - 1))} {op} {draw(num_expr(depth - 1))})"
    if choice == 7:
        return f"-({draw(num_expr(depth - 1))})"
    fn = draw(st.sampled_from(["abs", "round", "round2", "coalesce", "length", "year", "month", "day"]))
    if fn == "round2":
        return f"round({draw(num_expr(depth - 1))}, {draw(st.integers(0, 3))})"
    if fn == "coalesce":
        return f"coalesce({draw(num_expr(depth - 1))}, {draw(num_expr(depth - 1))})"
    if fn == "length":
        return f"length({draw(str_expr())})"
    if fn in ("year", "month", "day"):
        return f"{fn}({draw(date_expr())})"
    return f"{fn}({draw(num_expr(depth - 1))})"


def _sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@st.composite
def str_expr(draw: st.DrawFn) -> str:
    base = draw(st.one_of(st.just("s"), _strings.map(_sql_quote), st.just("NULL")))
    wrap = draw(st.sampled_from(["{}", "lower({})", "upper({})", "coalesce({}, 'a')"]))
    return wrap.format(base)


@st.composite
def date_expr(draw: st.DrawFn) -> str:
    return draw(
        st.one_of(
            st.just("d"),
            _dates.map(lambda d: f"DATE '{d.isoformat()}'"),
            st.datetimes(dt.datetime(1999, 12, 25), dt.datetime(2000, 1, 10)).map(
                lambda t: f"TIMESTAMP '{t.replace(microsecond=0).isoformat(sep=' ')}'"
            ),
        )
    )


_LIKE_PATTERNS = st.lists(st.sampled_from([*"abAB%_ é", "\\%", "\\_", "\\\\"]), max_size=5).map("".join)


@st.composite
def bool_expr(draw: st.DrawFn, depth: int = 3) -> str:
    choice = draw(st.integers(0, 11 if depth > 0 else 7))
    cmp = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]))
    if choice == 0:
        return f"{draw(num_expr())} {cmp} {draw(num_expr())}"
    if choice == 1:
        return f"{draw(str_expr())} {cmp} {draw(str_expr())}"
    if choice == 2:
        return f"{draw(date_expr())} {cmp} {draw(date_expr())}"
    if choice == 3:
        operand = draw(st.one_of(num_expr(1), str_expr(), date_expr(), st.just("b")))
        return f"{operand} {_kw(draw, 'IS')} {draw(st.sampled_from(['', 'NOT ']))}{_kw(draw, 'NULL')}"
    if choice == 4:
        items = draw(st.lists(st.one_of(_ints.map(str), st.just("NULL"), st.just("1.5")), min_size=1, max_size=4))
        negated = draw(st.sampled_from(["", "NOT "]))
        return f"{draw(num_expr(1))} {negated}IN ({', '.join(items)})"
    if choice == 5:
        negated = draw(st.sampled_from(["", "NOT "]))
        return f"{draw(num_expr(1))} {negated}BETWEEN {draw(num_expr(0))} AND {draw(num_expr(0))}"
    if choice == 6:
        op = draw(st.sampled_from(["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]))
        return f"{draw(str_expr())} {op} {_sql_quote(draw(_LIKE_PATTERNS))}"
    if choice == 7:
        return draw(st.sampled_from(["b", "TRUE", "FALSE", "NULL", "b = TRUE", "b <> FALSE"]))
    if choice <= 9:
        op = _kw(draw, draw(st.sampled_from(["AND", "OR"])))
        return f"({draw(bool_expr(depth - 1))}) {op} ({draw(bool_expr(depth - 1))})"
    if choice == 10:
        return f"{_kw(draw, 'NOT')} ({draw(bool_expr(depth - 1))})"
    items = draw(st.lists(_strings.map(_sql_quote), min_size=1, max_size=3))
    return f"{draw(str_expr())} {draw(st.sampled_from(['', 'NOT ']))}IN ({', '.join(items)})"


def _polars_rows(frame: pl.DataFrame, expr: pl.Expr) -> list[int]:
    return frame.with_row_index("__row").filter(expr)["__row"].to_list()


def _duckdb_rows(frame: pl.DataFrame, sql: str) -> list[int]:
    con = duckdb.connect()
    con.register("data", frame.with_row_index("__row").to_arrow())
    return [r[0] for r in con.sql(f'SELECT "__row" FROM data WHERE {sql} ORDER BY "__row"').fetchall()]


@settings(max_examples=300, deadline=None)
@given(frame=FRAMES, text=bool_expr().filter(lambda t: t.upper() != "NULL"))
@example(
    frame=pl.DataFrame({"i": [-7, 7, None, 0], "j": [3, -3, 0, None], "f": [-7.5, 7.5, float("nan"), 0.0],
                        "s": ["a%", "A_", None, "é"], "d": [dt.date(2000, 1, 1)] * 4, "b": [True, None, False, True]},
                       schema_overrides={"j": pl.Int32}),
    text="(i % j = -1) OR (f % 2 < 0) OR (i / 0 IS NULL AND s LIKE 'a\\%')",
)
def test_polars_and_duckdb_keep_the_same_rows(frame: pl.DataFrame, text: str) -> None:
    parsed = parse_filter(text)
    parsed.check_schema(frame.schema)
    expected = _duckdb_rows(frame, parsed.to_sql())
    assert _polars_rows(frame, parsed.to_polars()) == expected, parsed.to_sql()
    # Canonical text round trip: same AST, same SQL, same rows.
    again = parse_filter(parsed.to_text())
    assert again.ast == parsed.ast and again.to_sql() == parsed.to_sql()
    assert _polars_rows(frame, again.to_polars()) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=FILE_FRAMES, text=bool_expr(depth=2).filter(lambda t: t.upper() != "NULL"))
def test_parquet_source_read_matches_duckdb_on_the_file(frame: pl.DataFrame, text: str, tmp_path: Path) -> None:
    path = tmp_path / "frame.parquet"
    frame.write_parquet(path)
    source = ParquetSource(path=str(path), filter=text)
    read = source.read()
    duck = duckdb.connect().read_parquet(str(path)).filter(source.filter_sql())
    assert sorted(map(repr, read.rows())) == sorted(map(repr, duck.pl().rows()))


@pytest.mark.xfail(
    strict=True,
    reason="duckdb/duckdb#25521: DuckDB's Parquet reader folds float comparisons with min/max "
    "statistics, which leave NaN out, so NaN rows are kept or dropped wrongly. When this starts "
    "passing, the NaN exclusion in FILE_FRAMES can go.",
)
def test_duckdb_parquet_reader_nan_statistics_bug(tmp_path: Path) -> None:
    path = tmp_path / "nan.parquet"
    pl.DataFrame({"f": [0.0, 0.0, float("nan")]}).write_parquet(path)
    source = ParquetSource(path=str(path), filter="f = 0 OR f <> 0")
    assert source.read().height == 3  # Polars: NaN <> 0, and NaN is kept
    rows = duckdb.connect().read_parquet(str(path)).filter(source.filter_sql()).fetchall()
    assert len(rows) == 3


# ------------------------------------------------------------------ hypothesis: random text
_TOKENS = [
    "value", "region", '"a b"', "1", "2.5", "-", "+", "*", "/", "%", "(", ")", ",", "=", "!=",
    "<>", "<", "<=", ">", ">=", "AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE",
    "ILIKE", "TRUE", "FALSE", "'EU'", "'it''s'", "DATE", "'2024-01-01'", "TIMESTAMP", "lower",
    "round", "coalesce", "read_csv", "SELECT", "FROM", ";", "--", "/*", "::", "'", '"', ".",
    "＝", "\u00a0", "e1", "0x1",
]


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.lists(st.sampled_from(_TOKENS), max_size=12).map(" ".join)))
def test_random_text_parses_or_raises_invalid_filter_error(text: str) -> None:
    try:
        parsed = parse_filter(text)
    except InvalidFilterError as exc:
        assert str(exc).startswith("filter ")
        return
    # Whatever was accepted compiles on both sides and round-trips.
    assert isinstance(parsed.to_polars(), pl.Expr)
    assert parse_filter(parsed.to_text()).ast == parsed.ast
    assert isinstance(parsed.to_sql(), str)


# ------------------------------------------------------------------ in a flow
def test_filter_from_a_flow_parameter_fails_the_run_once(data_with_secret: tuple[Path, Path]) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from prefect_etl_blocks.tasks import extract_parquet

    data, secret = data_with_secret

    @flow
    def pipeline(row_filter: str) -> int:
        source = ParquetSource(path=str(data), filter="value > 0")
        source.filter = row_filter  # as if a block was saved with a filter that skipped validation
        return extract_parquet.with_options(retry_delay_seconds=0)(source).height

    @flow
    def by_block(source: ParquetSource) -> int:
        return extract_parquet(source).height

    assert pipeline("value > 0 AND region = 'US'") == 1
    attack = f"value = (SELECT max(pin) FROM read_csv('{secret}'))"
    state = pipeline(attack, return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidFilterError, match="SELECT"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_task_runs() if r.flow_run_id == state.state_details.flow_run_id]
    assert [r.run_count for r in runs] == [1]  # a DataError is never retried
    # A deployment parameter given as a dict is refused by parameter validation.
    refused = by_block({"path": str(data), "filter": attack}, return_state=True)  # type: ignore[arg-type]
    assert refused.is_failed()
    assert "SELECT" in str(refused.message) and SECRET not in str(refused.message)
