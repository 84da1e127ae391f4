"""The production stack, on loopback: ``prefect server start`` on PostgreSQL (Debian's server)
with Redis messaging (``prefect-redis``, Debian's ``redis-server``), every process stopped by
PID. Against it: the blocks register, a DuckLakeConnection saved there never shows its catalog
password, and a scaffolded project deploys, runs on a process worker (Completed, with rows) and
refuses a bad parameter by name. The settings are the ones docs/scaling.md gives as the recipe.

The project runs twice over: into a DuckDB file (main suite, DuckDB 2.x) and, with
``warehouse=ducklake``, into a DuckLake whose catalog is in the same PostgreSQL server (the
DuckLake leg, DuckDB 1.5.5 with the extension wheels).
"""

# ruff: noqa: F811  (fixtures are imported by name until tests/conftest.py lists their modules)
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.fixtures.postgres import PG_PASSWORD, PostgresServer, pg_server  # noqa: F401
from tests.fixtures.prefect_server import BIN, PrefectServer, running_server, stop_group
from tests.fixtures.redis import RedisServer, redis_server  # noqa: F401

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.xdist_group("production_stack"), pytest.mark.timeout(900)]


def production_settings(pg: PostgresServer, database: str, redis: RedisServer) -> dict[str, str]:
    """The server settings of the production recipe (docs/scaling.md), for loopback."""
    return {
        "PREFECT_API_DATABASE_CONNECTION_URL": pg.url(database),
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": redis.host,
        "PREFECT_REDIS_MESSAGING_PORT": str(redis.port),
        "PREFECT_REDIS_MESSAGING_DB": "0",
    }


@pytest.fixture(scope="module")
def stack(pg_server: PostgresServer, redis_server: RedisServer,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    database = pg_server.create_database("prefect")
    settings = {"PREFECT_UI_ENABLED": "false", **production_settings(pg_server, database, redis_server)}
    with running_server(tmp_path_factory.mktemp("prefect-production"), settings, startup_seconds=240) as server:
        yield server


def run(args: list[str], server: PrefectServer, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=server.env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def api(server: PrefectServer, method: str, path: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, f"{server.api_url}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response


def wait_for_run(server: PrefectServer, flow_run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    flow_run: dict = {}
    while time.monotonic() < deadline:
        flow_run = api(server, "GET", f"/flow_runs/{flow_run_id}").json()
        if flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s: {flow_run.get('state')}")


def test_the_server_keeps_its_state_in_postgresql_and_redis(stack: PrefectServer, pg_server: PostgresServer,
                                                            redis_server: RedisServer) -> None:
    tables = pg_server.admin("SELECT count(*) FROM pg_tables WHERE tablename IN ('flow_run', 'deployment', "
                             "'block_document')", dbname="prefect")
    assert tables.strip() == "3"
    health = api(stack, "GET", "/health").json()
    assert health is True
    # Redis carries the server's event stream: its keys appear once the server has run a while.
    deadline = time.monotonic() + 60
    keys = ""
    while time.monotonic() < deadline and not keys.strip():
        keys = subprocess.run(["redis-cli", "-h", redis_server.host, "-p", str(redis_server.port), "--scan"],
                              capture_output=True, text=True, timeout=10).stdout
        time.sleep(1)
    assert keys.strip(), "no keys in Redis: the server is not using Redis messaging"


_SAVE = textwrap.dedent(
    """
    from prefect_etl_blocks.ducklake import DuckLakeConnection
    DuckLakeConnection(catalog={catalog!r}, data_path="s3://lake/prod/").save("prod-lake", overwrite=True)
    lake = DuckLakeConnection.load("prod-lake")
    print(repr(lake))
    print(lake.catalog.get_secret_value() == {catalog!r})
    """
)


def test_blocks_register_and_a_saved_lake_never_shows_its_password(stack: PrefectServer,
                                                                  pg_server: PostgresServer) -> None:
    for module in ("prefect_etl_blocks", "prefect_etl_blocks.ducklake"):
        registered = run([str(BIN / "prefect"), "block", "register", "-m", module], stack)
        assert registered.returncode == 0, registered.stdout + registered.stderr
    slugs = {b["slug"] for b in api(stack, "POST", "/block_types/filter", json={}).json()}
    assert {"duckdb-connection", "parquet-source", "ducklake-connection"} <= slugs
    catalog = f"postgres:{pg_server.dsn('lake_catalog')}"
    saved = run([sys.executable, "-c", _SAVE.format(catalog=catalog)], stack)
    assert saved.returncode == 0, saved.stderr[-3000:]
    assert saved.stdout.splitlines()[-1] == "True"
    assert PG_PASSWORD not in saved.stdout and "password=********" in saved.stdout
    documents = api(stack, "POST", "/block_documents/filter", json={"include_secrets": False}).text
    assert PG_PASSWORD not in documents and "prod-lake" in documents
    inspect = run([str(BIN / "prefect"), "block", "inspect", "ducklake-connection/prod-lake"], stack)
    assert inspect.returncode == 0 and PG_PASSWORD not in inspect.stdout + inspect.stderr


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("ducklake", marks=pytest.mark.ducklake)])
def test_a_scaffolded_project_deploys_and_runs_on_the_production_stack(stack: PrefectServer, tmp_path: Path,
                                                                      pg_server: PostgresServer, warehouse: str) -> None:
    from prefect_etl_blocks.demo import generate_sales_data
    from prefect_etl_blocks.scaffold import new_project

    data = tmp_path / "data"
    generate_sales_data(data, rows=20_000, files=2, progress=False)
    database = tmp_path / "warehouse.duckdb"
    answers = {"project_name": "Prod ETL", "work_pool": f"prod-pool-{warehouse}",
               "source_path": str(data / "*.parquet"), "duckdb_path": str(database)}
    if warehouse == "ducklake":
        lake_db = pg_server.create_database("prodlake")
        save = textwrap.dedent(f"""
            from prefect_etl_blocks import DuckLakeConnection
            DuckLakeConnection(catalog={f"postgres:{pg_server.dsn(lake_db)}"!r},
                               data_path={str(tmp_path / "lake")!r}).save("prod-lake", overwrite=True)
        """)
        saved = run([sys.executable, "-c", save], stack)
        assert saved.returncode == 0, saved.stderr[-3000:]
        answers.update(warehouse="ducklake", ducklake_block="prod-lake")
    project = new_project("etl-flow", output_dir=tmp_path, no_input=True, extra_context=answers)
    prefect = str(BIN / "prefect")
    pool_name = answers["work_pool"]
    pool = run([prefect, "work-pool", "create", pool_name, "--type", "process"], stack)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    limits = run([sys.executable, "-m", "prod_etl.setup_limits"], stack, cwd=project)
    assert limits.returncode == 0, limits.stderr
    deploy = run([prefect, "--no-prompt", "deploy", "--all"], stack, cwd=project)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as sink:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", pool_name, "--limit", "2"],
            env=stack.env(), cwd=project, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        name = "prod-etl/prod-etl-scheduled"
        good = run([prefect, "deployment", "run", name, "--params", json.dumps({"table": "prod.summary"})], stack)
        assert good.returncode == 0, good.stdout + good.stderr
        run_id = next(line.split()[-1] for line in good.stdout.splitlines() if "UUID" in line)
        finished = wait_for_run(stack, run_id)
        assert finished["state"]["type"] == "COMPLETED", (
            finished["state"]["message"] + worker_log.read_text()[-4000:] + stack.logs()
        )
        stored = pg_server.admin(f"SELECT state_type FROM flow_run WHERE id = '{run_id}'", dbname="prefect")
        assert stored.strip() == "COMPLETED"  # the run's state lives in PostgreSQL
        if warehouse == "ducklake":
            from prefect_etl_blocks import DuckLakeConnection

            lake = DuckLakeConnection(catalog=f"postgres:{pg_server.dsn(lake_db)}", data_path=str(tmp_path / "lake"))
            assert lake.fetch_one("SELECT count(*) FROM prod.summary") == (8,)  # the rows are in the lake
            assert lake.load_history("prod.summary")["strategy"].to_list() == ["replace"]
        else:
            con = duckdb.connect(str(database), read_only=True)
            try:
                assert con.execute("SELECT count(*) FROM prod.summary").fetchone()[0] == 8
            finally:
                con.close()

        bad = run([prefect, "deployment", "run", name, "--params", json.dumps({"min_value": -5})], stack)
        assert bad.returncode != 0 and "min_value" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    finally:
        stop_group(worker)
