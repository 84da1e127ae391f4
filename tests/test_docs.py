"""The documentation tests itself: every public name is documented, every example runs, and the
site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import prefect_etl_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def narrative_text() -> str:
    """All docs pages except the generated API reference."""
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")) if p.name != "reference.md")


def public_names() -> list[str]:
    from prefect_etl_blocks import cache_policies, serializers, tasks

    names = [n for n in prefect_etl_blocks.__all__ if n not in ("errors", "checks", "__version__")]
    names += [n for n in ("extract_parquet", "load_to_duckdb", "run_duckdb_query") if hasattr(tasks, n)]
    for module in (cache_policies, serializers):
        for name, obj in vars(module).items():
            if (
                not name.startswith("_")
                and inspect.isclass(obj)
                and obj.__module__ == module.__name__
            ):
                names.append(name)
    return sorted(set(names))


def template_names() -> list[str]:
    index = json.loads((ROOT / "templates" / "cookiecutter.json").read_text())
    return sorted(index["templates"][key]["path"].strip("./") for key in index["templates"])


@pytest.mark.parametrize("name", public_names())
def test_public_name_is_documented(name: str) -> None:
    assert f"`{name}" in narrative_text(), (
        f"{name} is public (exported or defined in a public module) but no docs page mentions "
        f"`{name}`; document it in docs/ (the API reference alone does not count)."
    )


@pytest.mark.parametrize("name", template_names())
def test_template_is_documented(name: str) -> None:
    assert f"`{name}`" in (DOCS / "templates.md").read_text(), f"template {name} is missing from docs/templates.md"


def examples(page: Path) -> list[str]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == NO_RUN:
            continue
        found.append(match.group(1))
    return found


README = ROOT / "README.md"
PAGES = sorted(p for p in DOCS.rglob("*.md") if examples(p)) + [README]


@pytest.mark.xdist_group("docs-examples")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS if p != README else ROOT)) for p in PAGES])
def test_docs_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of a page runs, in order, in one namespace, in a fresh folder. The
    README's blocks are scripts, run as ``python etl.py`` runs them (``__name__ == "__main__"``)."""
    monkeypatch.chdir(tmp_path)
    name = "__main__" if page == README else f"docs_example_{page.stem}"
    namespace: dict[str, object] = {"__name__": name}
    for number, code in enumerate(examples(page), start=1):
        try:
            exec(compile(code, f"{page.relative_to(ROOT)} example {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(
                f"example {number} of {page.relative_to(ROOT)} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if page == README:  # the "Use" flow ran on its sample data, not only defined
        import duckdb

        with duckdb.connect("warehouse.duckdb", read_only=True) as con:
            assert con.execute("SELECT count(*) FROM analytics.daily_summary").fetchall() == [(8,)]


def test_examples_were_found() -> None:
    assert len(PAGES) >= 5, [str(p) for p in PAGES]


@pytest.mark.slow
def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (tmp_path / "site" / "blocks" / "duckdb_connection" / "index.html").exists()
