"""What ``prefect-etl new`` prints after success: where the project is and the exact commands
to install, try and test it, including how to install this library from where it came.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any


def library_install_argument() -> str | None:
    """What ``pip install`` needs to install this library from where it came, or ``None``
    when it came from a package index (a generated project's own install then pulls it in).

    Reads the installed distribution's ``direct_url.json`` (PEP 610), see
    :func:`install_argument_from_direct_url`. A package imported from a source tree that is not
    installed at all gives that tree.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("prefect-etl-blocks")
    except metadata.PackageNotFoundError:
        root = Path(__file__).resolve().parents[2]  # tools/ → the package → the source tree
        return shlex.quote(str(root)) if (root / "pyproject.toml").is_file() else None
    raw = dist.read_text("direct_url.json")
    try:
        info = json.loads(raw) if raw else None
    except ValueError:
        info = None
    return install_argument_from_direct_url(info)


def install_argument_from_direct_url(info: dict[str, Any] | None) -> str | None:
    """The ``pip install`` argument for a PEP 610 ``direct_url.json`` (``None``: an index).

    Example:
        ```python
        from prefect_etl_blocks.tools.cli import install_argument_from_direct_url

        editable = {"url": "file:///src/prefect-etl-blocks", "dir_info": {"editable": True}}
        assert install_argument_from_direct_url(editable) == "-e /src/prefect-etl-blocks"
        wheel = {"url": "file:///tmp/w/prefect_etl_blocks-0.1.0-py3-none-any.whl",
                 "archive_info": {}}
        assert install_argument_from_direct_url(wheel) == wheel["url"][7:]
        assert install_argument_from_direct_url(None) is None
        ```
    """
    from urllib.parse import unquote, urlparse

    if not info or not info.get("url"):
        return None
    url = str(info["url"])
    if isinstance(info.get("vcs_info"), dict):
        vcs = info["vcs_info"]
        commit = vcs.get("commit_id") or vcs.get("requested_revision")
        return shlex.quote(f"{vcs.get('vcs', 'git')}+{url}" + (f"@{commit}" if commit else ""))
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return shlex.quote(url)
    path = shlex.quote(unquote(parsed.path))
    if (info.get("dir_info") or {}).get("editable"):
        return f"-e {path}"
    return path


def next_steps(project: Path) -> list[str]:
    """The lines ``new`` prints after success: where the project is and the exact commands."""
    project = project.resolve()
    try:
        shown = f"./{project.relative_to(Path.cwd().resolve())}"
    except ValueError:
        shown = str(project)
    answers: dict[str, Any] = {}
    try:
        answers = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    module = answers.get("module_name")
    lines = [f"Created {shown}", "", "Next steps:"]
    library = library_install_argument()
    if library:
        lines.append(
            f"  python -m pip install {library}"
            "   # prefect-etl-blocks from where it was installed (not on a package index)"
        )
    lines.append(f"  python -m pip install -e {shlex.quote(shown + '[dev]')}")
    lines.append(f"  cd {shlex.quote(shown)}")
    if isinstance(module, str) and module:
        if (project / module / "sample_data.py").is_file():
            lines.append(f"  python -m {module}.sample_data")
        if (project / module / "setup_limits.py").is_file():
            lines.append(f"  python -m {module}.setup_limits   # needs PREFECT_API_URL")
        if (project / module / "flow.py").is_file():
            lines.append(f"  python -m {module}.flow")
    if (project / "tests").is_dir():
        lines.append("  python -m pytest")
    return lines
