"""The house rules of issue 21, kept true by tests (docs/architecture.md describes them).

* Start-up: ``import prefect_etl_blocks``, ``prefect-etl --help`` and ``prefect-etl version``
  load neither Prefect nor a block; a block loads only what it needs.
* Nothing breaks for users: every name and every module path from before the wings still
  resolves, the same block types register, with the same schema checksums.
* Wings: ``core < runtime < blocks < integration < tools``, each importing only from the wings
  below it, checked statically over every import (in functions and under ``TYPE_CHECKING``
  too), and Prefect's private API only in ``runtime/compat.py``.

Start-up is checked in fresh processes: in this one, other tests have long imported everything.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prefect_etl_blocks"

#: Third-party packages that a bare import or ``--help`` must not load: each costs 0.1-1 s.
HEAVY = ("prefect", "prefect_aws", "boto3", "botocore", "cookiecutter", "dask", "polars", "duckdb")

#: The public names of the package before the wings (0.1); none may go missing.
PUBLIC_NAMES = {
    "DuckDBConnection", "DuckLakeConnection", "LoadResult", "EmailNotifier", "email_notifier",
    "ParquetSource", "PolarsParquetSerializer", "S3ResultStorage", "dataframe_result_options",
    "FrameInputs", "SourceFingerprint", "checks", "errors", "__version__",
}

#: Block types that ``prefect block register -m prefect_etl_blocks`` registered before.
BLOCK_TYPES = [
    "duckdb-connection", "ducklake-connection", "email-notifier", "parquet-source",
    "s3-result-storage",
]

#: Schema checksums of every block type ``prefect-etl register`` registers (nested ones too),
#: taken from the package as it was before the wings (commit be84255), identical with the
#: newest dependencies and with the lowest ones (prefect 3.8.0, prefect-aws 0.5.3). Prefect
#: finds a saved block's schema by this checksum: if one changes, blocks that users saved
#: before the upgrade no longer load as they were. A change must be deliberate (a new field),
#: never a side effect of moving code.
SCHEMA_CHECKSUMS = {
    "duckdb-connection": "sha256:a015e3ec5d96be223b2acb069564f08b6d121725c24f7cddb4c41bacdf3af9d7",
    "aws-credentials": "sha256:d810608ab7d0761512f789ecae2d33d2aed873f95f7ccbeae59657038f76120f",
    "ducklake-connection": "sha256:70ca7f66b9c60a130e3448b9f6d586de5e6f439612b60a3c606e487dfc6593bb",
    "email-notifier": "sha256:3d36772d752552d602ac6ef946d763257e679a90d49de6b89fed2d3e3e539314",
    "parquet-source": "sha256:bf58a669fecb61a264111433aeb01da38531596480dd50dc24b53ea25fb2bd6a",
    "minio-credentials": "sha256:ca87ff036174d1ee9608471b9538891c3d53db6121a73003f429ae67009f4fb6",
    "s3-result-storage": "sha256:7b7998328d93400f68d901c3ff02f43cab3335a561f18b496d9e40b399b24316",
}


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter on this checkout; ``args`` follow the code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


_LOADED = """
import json, sys
def loaded():
    heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
    ours = sorted(m for m in sys.modules if m.startswith("prefect_etl_blocks."))
    return {"heavy": heavy, "ours": ours}
"""


def _loaded_after(statement: str) -> dict[str, list[str]]:
    done = _fresh(_LOADED + statement + "\nprint(json.dumps(loaded()))\n", json.dumps(HEAVY))
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- start-up


def test_importing_the_package_loads_no_block_and_no_heavy_dependency() -> None:
    loaded = _loaded_after("import prefect_etl_blocks")
    assert loaded["heavy"] == [], f"`import prefect_etl_blocks` imported {loaded['heavy']}"
    upper = [m for m in loaded["ours"] if m.split(".")[1] in {"runtime", "blocks", "integration", "tools"}]
    assert upper == [], f"`import prefect_etl_blocks` imported {upper}; names load on first use"


def test_the_duckdb_block_loads_without_prefect_aws_or_boto() -> None:
    loaded = _loaded_after("from prefect_etl_blocks import DuckDBConnection")
    assert "prefect" in loaded["heavy"]  # the block itself is loaded...
    s3 = {"prefect_aws", "boto3", "botocore"} & set(loaded["heavy"])
    assert not s3, f"DuckDBConnection pulled in {sorted(s3)} (only the S3 blocks need them)"


@pytest.mark.parametrize("argv", [["--help"], ["version"], []])
def test_the_cli_help_and_version_import_no_prefect(argv: list[str]) -> None:
    """As the console script runs it: ``prefect_etl_blocks.cli:main``."""
    runner = (
        "import contextlib, io\n"
        "from prefect_etl_blocks.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        f"    main({argv!r})\n"
        "assert out.getvalue(), 'printed nothing'\n"
    )
    loaded = _loaded_after(runner)
    assert loaded["heavy"] == [], f"`prefect-etl {' '.join(argv)}` imported {loaded['heavy']}"


def test_version_prints_the_installed_versions() -> None:
    from importlib import metadata

    import prefect_etl_blocks

    done = _fresh("import sys; from prefect_etl_blocks.cli import main; sys.exit(main(['version']))")
    assert done.stdout.splitlines() == [
        f"prefect-etl-blocks {prefect_etl_blocks.__version__}",
        *(f"{name} {metadata.version(name)}" for name in ("prefect", "polars", "duckdb")),
    ]


def test_python_m_old_cli_path_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prefect_etl_blocks.cli", "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: prefect-etl")


# ----------------------------------------------------------------------------- names and paths


def test_public_names_are_complete_and_resolve() -> None:
    done = _fresh(
        """
        import json, prefect_etl_blocks as p
        listed = sorted(set(p.__all__) & set(dir(p)))
        resolved = {name: type(getattr(p, name)).__name__ for name in p.__all__}
        print(json.dumps({"all": sorted(p.__all__), "dir": listed, "resolved": resolved}))
        """
    )
    found = json.loads(done.stdout)
    assert set(found["all"]) == PUBLIC_NAMES
    assert set(found["dir"]) == PUBLIC_NAMES, "dir() must list every public name"
    assert set(found["resolved"]) == PUBLIC_NAMES
    assert found["resolved"]["checks"] == found["resolved"]["errors"] == "module"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import prefect_etl_blocks

    with pytest.raises(AttributeError, match="no attribute 'DuckDBConection'"):
        prefect_etl_blocks.DuckDBConection  # noqa: B018


def test_every_old_module_path_is_the_module_at_its_new_path() -> None:
    from prefect_etl_blocks import _aliases

    assert len(_aliases.MOVED) >= 30
    for old, new in _aliases.MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
        assert sys.modules[old] is sys.modules[new], old


def test_old_paths_resolve_in_a_fresh_process_before_the_new_ones() -> None:
    """``from prefect_etl_blocks.tasks import ...`` first, as user code written for 0.1 does."""
    done = _fresh(
        """
        import importlib, sys
        from prefect_etl_blocks._aliases import MOVED
        for old in MOVED:
            importlib.import_module(old)
        print(sum(sys.modules[old] is sys.modules[new] for old, new in MOVED.items()), len(MOVED))
        """
    )
    same, total = done.stdout.split()
    assert same == total


# ----------------------------------------------------------------------------- block types


def test_prefect_block_register_finds_the_same_block_types() -> None:
    """``prefect block register -m prefect_etl_blocks`` walks ``inspect.getmembers`` of the
    (lazy) package; its registration call is replaced by a recorder, so no API is needed."""
    done = _fresh(
        """
        import asyncio, json
        import prefect_etl_blocks
        from prefect.blocks.core import Block
        from prefect.cli.block import _register_blocks_in_module

        async def record(cls, client=None):
            return None

        Block.register_type_and_schema = classmethod(record)
        found = asyncio.run(_register_blocks_in_module(prefect_etl_blocks))
        print(json.dumps(sorted(cls.get_block_type_slug() for cls in found)))
        """
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == BLOCK_TYPES


def test_the_collections_entry_point_defines_every_block_type() -> None:
    """Prefect loads the ``prefect.collections`` entry point to resolve a block by slug in a
    process that never imported this package (a worker, ``Block.load("slug/name")``)."""
    done = _fresh(
        """
        import json, sys
        from prefect.blocks.core import Block
        from prefect.plugins import load_prefect_collections
        from prefect.utilities.dispatch import lookup_type
        assert "prefect_etl_blocks" not in sys.modules
        loaded = load_prefect_collections()
        assert not isinstance(loaded["prefect_etl_blocks"], Exception), loaded["prefect_etl_blocks"]
        slugs = json.loads(sys.argv[1])
        print(json.dumps({s: lookup_type(Block, s).__module__ for s in slugs}))
        """,
        json.dumps(BLOCK_TYPES),
    )
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(modules) == set(BLOCK_TYPES)
    assert all(m.startswith("prefect_etl_blocks.blocks.") for m in modules.values()), modules


def test_block_schema_checksums_are_unchanged() -> None:
    from prefect_etl_blocks.tools.registration import block_classes

    now = {cls.get_block_type_slug(): cls._calculate_schema_checksum() for cls in block_classes()}
    assert now == SCHEMA_CHECKSUMS, (
        "a block type's schema changed: blocks saved with the earlier schema no longer load "
        "as they were. Revert the field change, or make it deliberately (new field with a "
        "default) and update SCHEMA_CHECKSUMS with a note in the changelog."
    )


# ----------------------------------------------------------------------------- wings

#: Wings from the bottom up; a module may import only from its own wing and the ones below.
#: ``facade`` is the package's ``__init__`` (and its helpers): it re-exports names of every
#: wing lazily, so it sits on top and no module of the package goes through it.
RANKS = {"core": 0, "runtime": 1, "blocks": 2, "integration": 3, "tools": 4, "facade": 5}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing_of(module: str) -> str | None:
    """The wing of a module of this package (old paths through ``_aliases.MOVED``), or None."""
    from prefect_etl_blocks import _aliases

    if module != "prefect_etl_blocks" and not module.startswith("prefect_etl_blocks."):
        return None
    for old in sorted(_aliases.MOVED, key=len, reverse=True):
        if module == old or module.startswith(old + "."):
            module = _aliases.MOVED[old] + module[len(old):]
            break
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in RANKS:
        return parts[1]
    return "facade"  # prefect_etl_blocks itself, _aliases, _on_prefect_import


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module ``source`` imports, anywhere (functions, ``TYPE_CHECKING``, ``try``), as
    ``(line, dotted name)``: ``from a import b`` gives ``a.b`` (the name may be a submodule),
    relative imports are resolved, ``importlib.import_module("x")`` with a literal counts, and
    a lazy public name of the package (``from prefect_etl_blocks import DuckDBConnection``)
    counts as its defining module."""
    import prefect_etl_blocks

    lazy = {**prefect_etl_blocks._LAZY, **prefect_etl_blocks._MODULES}
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            for alias in node.names:
                if base == "prefect_etl_blocks" and alias.name in lazy:
                    found.append((node.lineno, lazy[alias.name]))
                elif alias.name != "*":
                    found.append((node.lineno, f"{base}.{alias.name}"))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _package_modules() -> list[tuple[Path, str]]:
    return [(path, _module_name(path)) for path in sorted(PACKAGE.rglob("*.py"))]


def _violations(rule) -> list[str]:  # noqa: ANN001
    out: dict[tuple[str, int, str], str] = {}
    for path, module in _package_modules():
        source = path.read_text(encoding="utf-8")
        for line, target in imports_of(source, module, path.name == "__init__.py"):
            why = rule(module, wing_of(module), target)
            if why:  # one line per import statement and reason
                out.setdefault((str(path.relative_to(ROOT)), line, why), target)
    return [f"{p}:{line} imports {t} ({why})" for (p, line, why), t in sorted(out.items())]


def _upward(module: str, wing: str | None, target: str) -> str | None:
    to = wing_of(target)
    if wing is None or to is None or RANKS[to] <= RANKS[wing]:
        return None
    return f"{wing} may not import {to}"


def _prefect_in_core(module: str, wing: str | None, target: str) -> str | None:
    top = target.split(".")[0]
    if wing == "core" and (top == "prefect" or (top.startswith("prefect_") and top != "prefect_etl_blocks")):
        return "core is Prefect-free"
    return None


def _private_prefect(module: str, wing: str | None, target: str) -> str | None:
    parts = target.split(".")
    private = parts[0] == "prefect" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])
    if private and module != "prefect_etl_blocks.runtime.compat":
        return "Prefect's private API only in runtime/compat.py"
    return None


def test_the_import_scanner_sees_every_kind_of_import() -> None:
    """The rules below are only as strict as this scanner: each form here must be found."""
    source = """
        from typing import TYPE_CHECKING
        import prefect_etl_blocks.tasks
        from .. import blocks
        from ...integration.cache_policies import parquet_footer_sha256
        if TYPE_CHECKING:
            from prefect_etl_blocks.tools.cli import main
        def later():
            from prefect_etl_blocks import DuckLakeConnection
            from prefect.runtime import flow_run
            import importlib
            return importlib.import_module("prefect_etl_blocks.blocks.parquet")
        try:
            from prefect._internal.compatibility import async_dispatch
        except ImportError:
            pass
    """
    found = [t for _, t in imports_of(textwrap.dedent(source), "prefect_etl_blocks.core.loading.x")]
    wings = {t: wing_of(t) for t in found}
    assert wings["prefect_etl_blocks.tasks"] == "integration"  # an old path, through MOVED
    assert wings["prefect_etl_blocks.core.blocks"] == "core"  # `from .. import blocks` in core/loading
    assert wings["prefect_etl_blocks.integration.cache_policies"] == "integration"
    assert wings["prefect_etl_blocks.tools.cli.main"] == "tools"
    assert wings["prefect_etl_blocks.blocks.ducklake"] == "blocks"  # a lazy public name
    assert wings["prefect_etl_blocks.blocks.parquet"] == "blocks"
    assert "prefect.runtime" in found and "prefect._internal.compatibility" in found
    core = "prefect_etl_blocks.core.loading.x"
    assert _upward(core, "core", "prefect_etl_blocks.tasks")
    assert not _upward(core, "core", "prefect_etl_blocks.errors")
    assert _prefect_in_core(core, "core", "prefect.runtime")
    assert _prefect_in_core(core, "core", "prefect_aws.s3")
    assert not _prefect_in_core("prefect_etl_blocks.runtime.lineage", "runtime", "prefect.events")
    assert _private_prefect("prefect_etl_blocks.blocks.warehouse", "blocks", "prefect._internal.x")
    assert not _private_prefect("prefect_etl_blocks.runtime.compat", "runtime", "prefect._internal.x")


def test_every_module_belongs_to_a_wing() -> None:
    stray = [m for _, m in _package_modules() if wing_of(m) == "facade" and m.count(".") > 1]
    assert stray == [], f"modules outside the wings: {stray}"


def test_core_imports_no_prefect() -> None:
    found = _violations(_prefect_in_core)
    assert found == [], "core/ must not import Prefect:\n" + "\n".join(found)


def test_imports_only_run_downward() -> None:
    """core < runtime < blocks < integration < tools (docs/architecture.md)."""
    found = _violations(_upward)
    assert found == [], "imports that run up a wing:\n" + "\n".join(found)


def test_private_prefect_api_only_in_runtime_compat() -> None:
    found = _violations(_private_prefect)
    assert found == [], "\n".join(found)
