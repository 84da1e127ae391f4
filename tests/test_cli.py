"""``prefect-etl``: one-line errors, ``--debug`` tracebacks, ``new`` without a terminal, the
next steps ``new`` prints, ``history`` and ``doctor`` from the command line.

The CLI runs in subprocesses as ``python -m prefect_etl_blocks.cli`` (works before and after the
console script is installed), with no Prefect API configured and a Prefect home of its own.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from prefect_etl_blocks.cli import (
    build_parser,
    install_argument_from_direct_url,
    library_install_argument,
    main,
)

CLI = [sys.executable, "-m", "prefect_etl_blocks.cli"]
COMMANDS = {"demo", "new", "templates", "register", "doctor", "history"}


def cli_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(cwd / ".prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    return env


def run_cli(
    *args: str, cwd: Path, timeout: float = 120, columns: int | None = None
) -> subprocess.CompletedProcess:
    env = cli_env(cwd)
    if columns is not None:  # a worker's COLUMNS (set by whatever ran before) must not decide
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout,
    )


class Terminal:
    """The CLI on a pseudo-terminal (stdin, stdout and stderr), as a user at a shell runs it."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            [*CLI, *args], cwd=cwd, env=cli_env(cwd), stdin=child, stdout=child, stderr=child,
            start_new_session=True, close_fds=True,
            preexec_fn=lambda: __import__("fcntl").ioctl(0, __import__("termios").TIOCSCTTY, 0),
        )
        os.close(child)
        self.output = ""

    def read_until(self, text: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} within {timeout} s; got:\n{self.output}"
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the command ended before {text!r}; got:\n{self.output}"
                self.output += chunk.decode(errors="replace")
        return self.output

    def wait_for_question(self, timeout: float = 180) -> None:
        """Wait until the command sleeps waiting for the answer (readline's ``select()``).

        A Ctrl-C typed while the prompt is printed but before the wait starts is taken by
        Python's handler without waking anything; a user cannot type that fast, a test can.
        """
        deadline = time.monotonic() + timeout
        wchan = Path(f"/proc/{self.proc.pid}/wchan")
        while not wchan.read_text().startswith(("poll_schedule_timeout", "do_select")):
            assert time.monotonic() < deadline, f"not waiting for input: {wchan.read_text()}"
            time.sleep(0.05)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def finish(self, timeout: float = 180) -> int:
        """Answer every remaining question with Enter, and return the exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, self.output
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                self.output += chunk.decode(errors="replace")
                if chunk.rstrip().endswith((b":", b"?", b"]", b")")):
                    self.type("\n")
        while True:  # what was written before the exit
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk.decode(errors="replace")
        return self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.fd)


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- names and help


def test_help_is_prefect_etl_with_every_command(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: prefect-etl ")
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout or f"\n    {command}\n" in result.stdout
    assert "petl" not in result.stdout.replace("prefect-etl", "")
    assert COMMANDS <= set(build_parser()._subparsers._group_actions[0].choices)


def test_doctor_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["doctor", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: prefect-etl doctor ")
    for option in ("--limit NAME", "--database PATH", "--result-storage BLOCK_NAME",
                   "--notifier BLOCK_NAME", "--timeout", "--debug"):
        assert option in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: prefect-etl" in capsys.readouterr().out


# ----------------------------------------------------------------------------- one-line errors


def test_bad_argument_is_one_line_naming_the_command(tmp_path: Path) -> None:
    result = run_cli("demo", "--rows", "many", cwd=tmp_path)
    assert result.returncode == 1
    assert stderr_lines(result) == [
        "prefect-etl demo: argument --rows: invalid int value: 'many'; see `prefect-etl demo --help`."
    ]


def test_user_error_has_no_traceback_unless_debug(tmp_path: Path) -> None:
    plain = run_cli("new", "no-such-template", "--no-input", cwd=tmp_path)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr
    (line,) = stderr_lines(plain)
    assert line.startswith("prefect-etl new: No template named 'no-such-template'; available: ")
    assert "prefect-etl templates" in line

    for args in (("--debug", "new", "no-such-template", "--no-input"),
                 ("new", "no-such-template", "--no-input", "--debug")):
        debug = run_cli(*args, cwd=tmp_path)
        assert debug.returncode == 1
        assert "Traceback (most recent call last)" in debug.stderr
        assert "TemplateNotFoundError" in debug.stderr
        assert stderr_lines(debug)[-1] == line


def test_bad_key_value_answer_is_one_line(tmp_path: Path) -> None:
    result = run_cli("new", "etl-flow", "--no-input", "novalue", cwd=tmp_path)
    assert result.returncode == 1
    assert stderr_lines(result) == [
        "prefect-etl new: 'novalue' is not a key=value answer; write for example "
        "project_name='Sales ETL' (see `prefect-etl new --help`)."
    ]


def test_bad_answer_is_one_line_naming_the_field_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli("new", "etl-flow", "--no-input", "project_slug=Bad_Slug", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = stderr_lines(result)
    assert line.startswith("prefect-etl new: ") and "project_slug='Bad_Slug'" in line
    assert "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_unexpected_error_says_bug_and_points_to_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import prefect_etl_blocks.scaffold as scaffold

    def broken() -> dict[str, str]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(scaffold, "list_templates", broken)
    assert main(["templates"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "prefect-etl templates: unexpected error ZeroDivisionError: division by zero. This is a "
        "bug in prefect-etl-blocks; run it again with --debug for the traceback and report it."
    ]
    assert main(["--debug", "templates"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_ctrl_c_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import prefect_etl_blocks.scaffold as scaffold

    def interrupted() -> dict[str, str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(scaffold, "list_templates", interrupted)
    assert main(["templates"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        "prefect-etl templates: interrupted (Ctrl-C); stopped before finishing."
    ]


# ----------------------------------------------------------------------------- new


def test_new_without_a_terminal_uses_defaults_and_says_so(tmp_path: Path) -> None:
    result = run_cli("new", "etl-flow", "project_name=Orders ETL", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stderr_lines(result) == [
        "prefect-etl new: no terminal on stdin, so no questions are asked: using the template's "
        "defaults and the key=value answers given (as with --no-input)."
    ]
    answers = json.loads((tmp_path / "orders-etl" / ".cookiecutter.json").read_text())
    assert answers["project_name"] == "Orders ETL" and answers["project_slug"] == "orders-etl"
    module = answers["module_name"]
    out = result.stdout.splitlines()
    assert out[0] == "Created ./orders-etl"
    library = library_install_argument()
    steps = [line.strip() for line in out[out.index("Next steps:") + 1 :]]
    expected = ["python -m pip install -e './orders-etl[dev]'", "cd ./orders-etl"]
    if library:
        expected.insert(0, f"python -m pip install {library}")
    assert [s.split("   #")[0] for s in steps[: len(expected)]] == expected
    assert f"python -m {module}.flow" in steps
    assert "python -m pytest" in steps


def test_new_at_a_terminal_asks_and_uses_the_answers(tmp_path: Path) -> None:
    terminal = Terminal("new", "etl-flow", cwd=tmp_path)
    try:
        first = terminal.read_until(":")
        assert "Sales ETL" in first  # the first question shows its default
        terminal.type("Pty Orders\n")
        assert terminal.finish() == 0, terminal.output
    finally:
        terminal.close()
    assert "no terminal" not in terminal.output
    answers = json.loads((tmp_path / "pty-orders" / ".cookiecutter.json").read_text())
    assert answers["project_name"] == "Pty Orders"
    assert "Created ./pty-orders" in terminal.output


def test_ctrl_c_at_a_question_is_one_line_and_exit_130(tmp_path: Path) -> None:
    terminal = Terminal("new", "etl-flow", cwd=tmp_path)
    try:
        terminal.read_until(":")
        terminal.wait_for_question()
        before = len(terminal.output)
        terminal.type("\x03")  # the terminal turns Ctrl-C into SIGINT for the command
        code = terminal.finish()
    finally:
        terminal.close()
    assert code == 130, terminal.output
    after = [line for line in terminal.output[before:].splitlines() if line.strip() and line.strip() != "^C"]
    assert after == ["prefect-etl new: interrupted (Ctrl-C); stopped before finishing."]
    assert "Traceback" not in terminal.output
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_existing_folder_is_refused_naming_overwrite(tmp_path: Path) -> None:
    assert run_cli("new", "etl-flow", "--no-input", cwd=tmp_path).returncode == 0
    readme = tmp_path / "sales-etl" / "README.md"
    readme.write_text("my edits")
    again = run_cli("new", "etl-flow", "--no-input", cwd=tmp_path)
    assert again.returncode == 1
    (line,) = stderr_lines(again)
    assert line.startswith("prefect-etl new: ") and "sales-etl already exists" in line
    assert "--overwrite" in line
    assert readme.read_text() == "my edits"
    overwritten = run_cli("new", "etl-flow", "--no-input", "--overwrite", cwd=tmp_path)
    assert overwritten.returncode == 0, overwritten.stderr
    assert readme.read_text() != "my edits"


def test_install_argument_follows_pep_610() -> None:
    assert install_argument_from_direct_url(None) is None
    assert install_argument_from_direct_url({}) is None
    checkout = {"url": "file:///src/my%20libs/prefect-etl-blocks", "dir_info": {"editable": True}}
    assert install_argument_from_direct_url(checkout) == "-e '/src/my libs/prefect-etl-blocks'"
    checkout["dir_info"] = {}
    assert install_argument_from_direct_url(checkout) == "'/src/my libs/prefect-etl-blocks'"
    wheel = {"url": "file:///dist/prefect_etl_blocks-0.1.0-py3-none-any.whl", "archive_info": {}}
    assert install_argument_from_direct_url(wheel) == "/dist/prefect_etl_blocks-0.1.0-py3-none-any.whl"
    git = {"url": "https://example.com/etl.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}}
    assert install_argument_from_direct_url(git) == "git+https://example.com/etl.git@abc123"
    remote = {"url": "https://example.com/prefect_etl_blocks-0.1.0.tar.gz", "archive_info": {}}
    assert install_argument_from_direct_url(remote) == remote["url"]


def test_library_install_argument_matches_this_installation() -> None:
    from importlib import metadata

    raw = metadata.distribution("prefect-etl-blocks").read_text("direct_url.json")
    expected = install_argument_from_direct_url(json.loads(raw)) if raw else None
    assert library_install_argument() == expected
    if raw and json.loads(raw).get("dir_info", {}).get("editable"):
        assert expected == f"-e {Path(__file__).resolve().parents[1]}"


# ----------------------------------------------------------------------------- history


def test_history_prints_the_load_ledger(tmp_path: Path) -> None:
    import polars as pl

    from prefect_etl_blocks import DuckDBConnection

    database = tmp_path / "wh.duckdb"
    db = DuckDBConnection(database=str(database))
    result = db.load_frame(pl.DataFrame({"category": ["a"], "orders": [3]}), "daily_summary", return_result=True)
    other = tmp_path / "empty.duckdb"
    duckdb.connect(str(other)).close()
    printed = run_cli("history", str(database), "daily_summary", cwd=tmp_path, columns=100)
    assert printed.returncode == 0, printed.stderr
    assert result.load_id[:8] in printed.stdout and "replace" in printed.stdout
    assert "Traceback" not in printed.stderr
    wide = run_cli("history", str(database), "daily_summary", "--wide", cwd=tmp_path)
    assert wide.returncode == 0 and result.load_id in wide.stdout, wide.stderr
    empty = run_cli("history", str(other), cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.split() == ["finished", "(UTC)", "load", "table", "strategy", "inserted", "updated", "deleted", "new"]
    assert empty.stderr == f"prefect-etl history: no loads recorded in {other} yet.\n"


def test_history_of_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "absent.duckdb"
    assert main(["history", str(missing)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"prefect-etl history: DuckDB file {missing} does not exist; pass the database file your "
        "flows load into."
    ]
    assert not missing.exists()


# ----------------------------------------------------------------------------- register and doctor


def test_register_without_an_api_is_one_line(tmp_path: Path) -> None:
    result = run_cli("register", cwd=tmp_path)
    assert result.returncode == 1
    (line,) = stderr_lines(result)
    assert line.startswith("prefect-etl register: no Prefect API configured (PREFECT_API_URL is not set)")


def test_doctor_without_an_api_fails_and_skips_what_needs_it(tmp_path: Path) -> None:
    (tmp_path / ".cookiecutter.json").write_text(
        json.dumps({"project_slug": "sales-etl", "module_name": "sales_etl", "duckdb_path": "wh.duckdb"})
    )
    result = run_cli("doctor", "--timeout", "2", "--notifier", "alerts", cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    statuses = {line[6:24].strip(): line[:4].strip() for line in lines[:7]}
    assert statuses == {
        "Prefect API": "FAIL",
        "block types": "skip",
        "serializer": "ok",
        "concurrency limits": "skip",
        "DuckDB file": "ok",
        "result storage": "skip",
        "notifier": "skip",
    }
    assert f"{tmp_path / 'wh.duckdb'} does not exist yet" in lines[4]
    assert "-- fix: start a server" in lines[0]
    assert lines[-1] == "1 check(s) failed: 2 ok, 1 FAIL, 4 skip"
    assert result.stderr == ""


# ----------------------------------------------------------------------------- history and doctor: one way to name the database


@pytest.fixture
def ledger_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """A DuckDB file whose ledger has long table names, incremental and cursor loads."""
    import polars as pl

    from prefect_etl_blocks import DuckDBConnection, ParquetSource

    database = tmp_path / "wh.duckdb"
    db = DuckDBConnection(database=str(database))
    long_name = "analytics.daily_summary_of_sales_by_category_region_and_channel_for_finance"
    ids = [db.load_frame(pl.DataFrame({"id": [1, 2]}), long_name, return_result=True).load_id]
    ids.append(db.load_frame(pl.DataFrame({"id": [2, 3]}), long_name, mode="upsert", keys="id", return_result=True).load_id)
    ids.append(db.load_frame(pl.DataFrame({"id": [1], "ts": [10]}), "events", cursor="ts", keys="id", return_result=True).load_id)
    (tmp_path / "in").mkdir()
    pl.DataFrame({"id": [1]}).write_parquet(tmp_path / "in" / "a.parquet")
    ids.append(db.load_parquet(ParquetSource(path=str(tmp_path / "in")), "raw.files_table", incremental=True, return_result=True).load_id)
    db.close()
    return database, ids


def test_history_fits_100_columns_and_wide_or_json_show_every_column(tmp_path: Path, ledger_file: tuple[Path, list[str]]) -> None:
    database, ids = ledger_file
    env = {**cli_env(tmp_path), "COLUMNS": "100"}

    def history(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "history", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    compact = history("--database", str(database))
    assert compact.returncode == 0, compact.stderr
    lines = compact.stdout.splitlines()
    assert len(lines) == 6 and max(len(line) for line in lines) <= 100, lines
    assert [line.split()[2] for line in lines[1:5]] == [i[:8] for i in ids]
    assert "upsert (cursor)" in lines[3] and "append (files)" in lines[4]
    assert lines[-1] == "4 load(s), oldest first; --wide or --json: every column in full"
    positional = history(str(database))
    assert positional.stdout == compact.stdout
    wide = history(str(database), "--wide")
    assert all(i in wide.stdout for i in ids) and "cursor_to" in wide.stdout and "files_deleted" in wide.stdout
    rows = json.loads(history("--database", str(database), "--json").stdout)
    assert [r["load_id"] for r in rows] == ids
    assert set(rows[0]) >= {"table_name", "files", "cursor_column", "cursor_to", "checks", "flow_run_id", "finished_at"}
    assert rows[0]["table_name"] == "analytics.daily_summary_of_sales_by_category_region_and_channel_for_finance"
    assert rows[2]["cursor_to"] == "10" and rows[3]["files"] == [str(tmp_path / "in" / "a.parquet")]
    narrow = subprocess.run([*CLI, "history", str(database)], cwd=tmp_path, env={**env, "COLUMNS": "40"},
                            capture_output=True, text=True, timeout=120)
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 40


def test_history_takes_the_table_every_way(tmp_path: Path, ledger_file: tuple[Path, list[str]]) -> None:
    database, ids = ledger_file
    ways = [
        ["history", str(database), "events"],
        ["history", "--database", str(database), "events"],
        ["history", "--database", str(database), "--table", "events"],
        ["history", str(database), "--table", "events"],
    ]
    for argv in ways:
        result = run_cli(*argv, "--json", cwd=tmp_path)
        assert result.returncode == 0, (argv, result.stderr)
        assert [r["load_id"] for r in json.loads(result.stdout)] == [ids[2]], argv


def test_history_and_doctor_refuse_two_databases_and_history_needs_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for command in ("history", "doctor"):
        assert main([command, "a.duckdb", "--database", "b.duckdb", "--table", "t"] if command == "history"
                    else [command, "a.duckdb", "--database", "b.duckdb"]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"prefect-etl {command}: two databases given (a.duckdb and --database b.duckdb); pass one, as "
            f"`prefect-etl {command} --database PATH` or `prefect-etl {command} PATH`."
        ]
    assert main(["history"]) == 1
    assert capsys.readouterr().err.startswith("prefect-etl history: which DuckDB file? Pass --database PATH")
    assert main(["history", "--wide", "--json", "x"]) == 1
    assert "not allowed with argument" in capsys.readouterr().err


def test_history_defaults_to_the_projects_database_as_doctor_does(tmp_path: Path, ledger_file: tuple[Path, list[str]]) -> None:
    database, ids = ledger_file
    (tmp_path / ".cookiecutter.json").write_text(json.dumps({"project_slug": "s", "module_name": "s", "duckdb_path": database.name}))
    result = run_cli("history", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["load_id"] for r in json.loads(result.stdout)] == ids


def test_doctor_takes_the_database_positionally_too(tmp_path: Path) -> None:
    target = tmp_path / "not-a-db.duckdb"
    target.write_text("plain text")
    for argv in (["doctor", str(target)], ["doctor", "--database", str(target)]):
        result = run_cli(*argv, "--timeout", "1", cwd=tmp_path)
        (line,) = [x for x in result.stdout.splitlines() if "DuckDB file" in x]
        assert line.startswith("FAIL") and f"{target} is not a DuckDB database file" in line, line
