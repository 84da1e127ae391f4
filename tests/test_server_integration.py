"""Against a real ``prefect server start`` on loopback: block registration (Prefect's command and
``prefect-etl register``), ``prefect-etl doctor`` on a healthy and a broken setup, saving and loading blocks across processes, secret masking, and a baked
``etl-flow`` project deployed with ``prefect deploy`` and run by a ``prefect worker``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.fixtures.prefect_server import BIN, PrefectServer, stop_group
from tests.fixtures.smtp import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.xdist_group("prefect_server"), pytest.mark.timeout(600)]

OUR_SLUGS = {"duckdb-connection", "parquet-source", "s3-result-storage", "email-notifier"}
# The command line as a module: works whether or not the `prefect-etl` script is installed yet.
CLI = [sys.executable, "-m", "prefect_etl_blocks.cli"]
SECRETS = {"aws": "aws-secret-never-shown", "smtp": "smtp-secret-never-shown", "storage": "storage-option-secret"}


def run(args: list[str], server: PrefectServer, cwd: Path | None = None, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=server.env(**env), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def api(server: PrefectServer, method: str, path: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, f"{server.api_url}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response


def block_type_slugs(server: PrefectServer) -> set[str]:
    return {b["slug"] for b in api(server, "POST", "/block_types/filter", json={}).json()}


def test_prefect_block_register_module(prefect_server: PrefectServer) -> None:
    result = run([str(BIN / "prefect"), "block", "register", "-m", "prefect_etl_blocks"], prefect_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert OUR_SLUGS <= block_type_slugs(prefect_server)


def test_prefect_etl_register_prints_what_it_registered(prefect_server: PrefectServer) -> None:
    result = run([*CLI, "register"], prefect_server)
    assert result.returncode == 0, result.stderr
    for slug in OUR_SLUGS | {"aws-credentials"}:
        assert f"registered {slug}" in result.stdout
    assert f"block types registered with {prefect_server.api_url}" in result.stdout


def test_prefect_etl_register_without_an_api_says_so(prefect_server: PrefectServer) -> None:
    env = prefect_server.env()
    env.pop("PREFECT_API_URL")
    result = subprocess.run([*CLI, "register"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "no Prefect API configured (PREFECT_API_URL is not set)" in result.stderr
    dead = f"http://127.0.0.1:{free_port()}/api"
    started = time.monotonic()
    result = run([*CLI, "register", "--timeout", "3"], prefect_server, PREFECT_API_URL=dead)
    assert result.returncode == 1 and f"the Prefect API at {dead} did not answer" in result.stderr
    assert time.monotonic() - started < 60


def test_prefect_etl_doctor_healthy_then_broken(
    prefect_server: PrefectServer, tmp_path: Path, s3_server, aws_credentials, bucket: str, smtp_plain
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from prefect_etl_blocks import EmailNotifier, S3ResultStorage
    from prefect_etl_blocks.registration import call_with_deadline

    project = tmp_path / "doctor-etl"
    project.mkdir()
    (project / ".cookiecutter.json").write_text(json.dumps(
        {"project_slug": "doctor-etl", "module_name": "doctor_etl", "duckdb_path": "warehouse.duckdb"}
    ))
    database = project / "warehouse.duckdb"
    duckdb.connect(str(database)).close()

    def setup() -> None:
        S3ResultStorage(bucket_name=bucket, bucket_folder="results", credentials=aws_credentials).save(
            "doctor-results", overwrite=True
        )
        EmailNotifier(smtp_server=smtp_plain.host, smtp_port=smtp_plain.port, smtp_type="INSECURE",
                      from_address="etl@example.com").save("doctor-mail", overwrite=True)
        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="doctor-etl-duckdb-writes", limit=1)
            )

    call_with_deadline(setup, 30, prefect_server.api_url)
    options = ["--result-storage", "doctor-results", "--notifier", "doctor-mail"]
    healthy = run([*CLI, "doctor", *options], prefect_server, cwd=project, timeout=120)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    lines = healthy.stdout.splitlines()
    assert [line[:4] for line in lines[:7]] == ["ok  "] * 7, healthy.stdout
    assert "doctor-etl-duckdb-writes (limit 1) (from .cookiecutter.json)" in lines[3]
    assert lines[-1] == "healthy: 7 ok, 0 FAIL, 0 skip"
    assert smtp_plain.mailbox.messages == []

    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys\ncon = duckdb.connect({str(database)!r})\n"
         "print('ready', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        broken = run([*CLI, "doctor", "--limit", "doctor-etl-absent", *options], prefect_server,
                     cwd=project, timeout=120)
    finally:
        holder.stdin.close()
        holder.wait(timeout=20)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    lines = broken.stdout.splitlines()
    assert lines[3].startswith("FAIL  concurrency limits  missing: doctor-etl-absent -- fix: ")
    assert lines[4].startswith(f"FAIL  DuckDB file         {database} is locked by process {holder.pid} (")
    assert lines[-1] == "2 check(s) failed: 5 ok, 2 FAIL, 0 skip"
    assert broken.stderr == ""


_SAVE = textwrap.dedent(
    """
    from prefect_aws import AwsCredentials
    from prefect_etl_blocks import DuckDBConnection, EmailNotifier, ParquetSource, S3ResultStorage
    creds = AwsCredentials(aws_access_key_id="key", aws_secret_access_key={aws!r},
                           aws_client_parameters={{"endpoint_url": "http://127.0.0.1:9000"}})
    DuckDBConnection(database="/tmp/x.duckdb", lock_timeout_seconds=5).save("it-duckdb", overwrite=True)
    ParquetSource(path="s3://lake/*.parquet", aws_credentials=creds, filter="value > 0",
                  storage_options={{"aws_session_token": {storage!r}}}).save("it-parquet", overwrite=True)
    S3ResultStorage(bucket_name="results", credentials=creds).save("it-results", overwrite=True)
    EmailNotifier(smtp_server="127.0.0.1", from_address="a@example.com", username="u",
                  password={smtp!r}).save("it-email", overwrite=True)
    print("saved")
    """
).format(**SECRETS)

_LOAD = textwrap.dedent(
    """
    import json
    from prefect_etl_blocks import DuckDBConnection, EmailNotifier, ParquetSource, S3ResultStorage
    db = DuckDBConnection.load("it-duckdb")
    src = ParquetSource.load("it-parquet")
    res = S3ResultStorage.load("it-results")
    mail = EmailNotifier.load("it-email")
    print(json.dumps({
        "db": [db.database, db.lock_timeout_seconds],
        "src": [src.path, src.filter, src.aws_credentials.aws_secret_access_key.get_secret_value()],
        "res": [res.bucket_name, str(res.credentials.aws_client_parameters.endpoint_url)],
        "mail": [mail.smtp_server, mail.password.get_secret_value()],
    }))
    """
)


def test_blocks_saved_in_one_process_load_in_another_with_secrets_masked(prefect_server: PrefectServer) -> None:
    saved = run([sys.executable, "-c", _SAVE], prefect_server)
    assert saved.returncode == 0 and "saved" in saved.stdout, saved.stderr[-3000:]
    loaded = run([sys.executable, "-c", _LOAD], prefect_server)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    values = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert values == {
        "db": ["/tmp/x.duckdb", 5.0],
        "src": ["s3://lake/*.parquet", "value > 0", SECRETS["aws"]],
        "res": ["results", "http://127.0.0.1:9000"],
        "mail": ["127.0.0.1", SECRETS["smtp"]],
    }
    documents = api(prefect_server, "POST", "/block_documents/filter", json={"include_secrets": False}).text
    for secret in SECRETS.values():
        assert secret not in documents
    assert "********" in documents
    for slug, name in (("email-notifier", "it-email"), ("parquet-source", "it-parquet"), ("s3-result-storage", "it-results")):
        inspect = run([str(BIN / "prefect"), "block", "inspect", f"{slug}/{name}"], prefect_server)
        assert inspect.returncode == 0, inspect.stderr
        assert not any(secret in inspect.stdout for secret in SECRETS.values()), inspect.stdout


def wait_for_run(server: PrefectServer, flow_run_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = api(server, "GET", f"/flow_runs/{flow_run_id}").json()
        if flow_run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return flow_run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s: {flow_run['state']}")


def server_events(server: PrefectServer, name: str, key: str, timeout: float = 90) -> list[dict]:
    """The events ``name`` of resource ``key`` the server stored, waiting for the first (the
    client sends them in the background and the server persists them in batches)."""
    query = {"filter": {"event": {"name": [name]}, "resource": {"id": [key]}}, "limit": 10}
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while not found and time.monotonic() < deadline:
        found = api(server, "POST", "/events/filter", json=query).json()["events"]
        time.sleep(0.5)
    return found


def test_baked_project_deploys_and_runs_on_a_worker(prefect_server: PrefectServer, tmp_path: Path) -> None:
    from prefect_etl_blocks.demo import generate_sales_data
    from prefect_etl_blocks.scaffold import new_project

    data = tmp_path / "data"
    generate_sales_data(data, rows=20_000, files=2, progress=False)
    database = tmp_path / "warehouse.duckdb"
    project = new_project(
        "etl-flow", output_dir=tmp_path, no_input=True,
        extra_context={"project_name": "Deployed ETL", "work_pool": "it-pool",
                       "source_path": str(data / "*.parquet"), "duckdb_path": str(database)},
    )
    prefect = str(BIN / "prefect")
    pool = run([prefect, "work-pool", "create", "it-pool", "--type", "process"], prefect_server)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    limits = run([sys.executable, "-m", "deployed_etl.setup_limits"], prefect_server, cwd=project)
    assert limits.returncode == 0, limits.stderr
    deploy = run([prefect, "--no-prompt", "deploy", "--all"], prefect_server, cwd=project, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]

    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as sink:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "it-pool", "--limit", "2"],
            env=prefect_server.env(), cwd=project, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        name = "deployed-etl/deployed-etl-scheduled"
        good = run([prefect, "deployment", "run", name, "--params", json.dumps({"table": "it.summary"})], prefect_server)
        assert good.returncode == 0, good.stdout + good.stderr
        run_id = next(line.split()[-1] for line in good.stdout.splitlines() if "UUID" in line)
        finished = wait_for_run(prefect_server, run_id)
        assert finished["state"]["type"] == "COMPLETED", finished["state"]["message"] + worker_log.read_text()[-4000:]
        con = duckdb.connect(str(database), read_only=True)
        assert con.execute("SELECT count(*) FROM it.summary").fetchone()[0] == 8
        con.close()

        # Lineage: the load emitted an asset materialization event the real server stored.
        from prefect_etl_blocks.lineage import SUCCEEDED, asset_key

        key = asset_key(str(database), "it.summary")
        events = server_events(prefect_server, SUCCEEDED, key)
        assert events, f"no {SUCCEEDED} event for {key}"
        assert events[0]["payload"]["rows"] == 8 and events[0]["payload"]["strategy"] == "replace"

        # Refused before a run exists: the deployment enforces the flow's parameter schema.
        bad = run([prefect, "deployment", "run", name, "--params", json.dumps({"min_value": -5})], prefect_server)
        assert bad.returncode != 0 and "min_value" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        # A value the schema allows but the data cannot satisfy: the run itself ends Failed and
        # its message names the parameter's value (the missing source path).
        missing = str(tmp_path / "nowhere" / "*.parquet")
        odd = run([prefect, "deployment", "run", name, "--params", json.dumps({"source_path": missing})], prefect_server)
        assert odd.returncode == 0, odd.stdout + odd.stderr
        odd_id = next(line.split()[-1] for line in odd.stdout.splitlines() if "UUID" in line)
        failed = wait_for_run(prefect_server, odd_id)
        assert failed["state"]["type"] == "FAILED", failed["state"]
        logs = api(prefect_server, "POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [odd_id]}}}).text
        assert "matched no Parquet files" in logs and missing in logs
    finally:
        stop_group(worker)


def test_lineage_edges_reach_a_real_servers_events_api(prefect_server: PrefectServer, tmp_path: Path) -> None:
    """Issue 23: a flow loads a hive Parquet dataset; the server stores the source's
    ``prefect.asset.referenced`` event and a materialization relating it with role ``asset``,
    under the table key prefect-dbt gives ``"shop"."raw"."orders"``."""
    from prefect_dbt.utilities import format_resource_id

    from prefect_etl_blocks.lineage import REFERENCED, SUCCEEDED, asset_key, source_asset_key

    data = tmp_path / "orders"
    (data / "day=1").mkdir(parents=True)
    database = tmp_path / "shop.duckdb"
    script = tmp_path / "nightly.py"
    script.write_text(textwrap.dedent(f"""
        import polars as pl
        from prefect import flow
        from prefect_etl_blocks import DuckDBConnection, ParquetSource
        from prefect_etl_blocks.tasks import load_to_duckdb

        pl.DataFrame({{"id": [1, 2, 3]}}).write_parquet({str(data / "day=1" / "a.parquet")!r})

        @flow
        def nightly() -> None:
            db = DuckDBConnection(database={str(database)!r})
            load_to_duckdb(ParquetSource(path={str(data)!r} + "/day=*/*.parquet"), "raw.orders", db,
                           upstream=["postgres://crm/public/orders"])

        nightly()
    """))
    done = run([sys.executable, str(script)], prefect_server, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    source = source_asset_key(str(data))
    table = asset_key(str(database), "raw.orders")
    assert table == format_resource_id("duckdb", '"shop"."raw"."orders"') == "duckdb://shop/raw/orders"

    assert server_events(prefect_server, REFERENCED, source)
    assert server_events(prefect_server, REFERENCED, "postgres://crm/public/orders")
    [materialized] = server_events(prefect_server, SUCCEEDED, table)
    upstream = sorted(r["prefect.resource.id"] for r in materialized["related"] if r["prefect.resource.role"] == "asset")
    assert upstream == sorted([source, "postgres://crm/public/orders"])
    assert {"flow-run", "task-run", "asset-materialized-by"} <= {r["prefect.resource.role"] for r in materialized["related"]}
    assert materialized["payload"]["row_count"] == 3
    assert materialized["payload"]["schema"] == {"id": "BIGINT", "day": "BIGINT"}  # day: the hive column
