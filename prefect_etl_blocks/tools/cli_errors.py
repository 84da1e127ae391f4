"""How ``prefect-etl`` reports errors: :class:`UsageError` for an argument it cannot use, and
:func:`user_error`, the one-line message (what, where, how to fix) for any error the user can
fix. An error it has no message for is a bug, and :func:`prefect_etl_blocks.tools.cli.main`
says so.

Example:
    ```python
    from prefect_etl_blocks.tools.cli_errors import UsageError, user_error

    assert user_error(UsageError("--rows must be a number")) == "--rows must be a number"
    assert user_error(RuntimeError("boom")) is None
    ```
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect_etl_blocks.core.errors import DataError, PrefectETLBlocksError

PROG = "prefect-etl"


class UsageError(DataError, ValueError):
    """A command-line argument that cannot be used (unknown option, bad ``key=value``...).

    ``where`` is the command it belongs to (``prefect-etl new``), when known.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug."""
    try:
        from cookiecutter import exceptions as cc
    except ImportError:  # templates not installed: no cookiecutter errors to expect
        cc = None
    if cc is not None:
        if isinstance(exc, cc.OutputDirExistsException):
            found = re.search(r'"(.*)" directory already exists', str(exc))
            folder = found.group(1) if found else "the project folder"
            return (
                f"{folder} already exists; pass --overwrite to write the project into it "
                "(files the template does not produce are kept), or choose another "
                "project_slug=... or --output-dir."
            )
        if isinstance(exc, cc.FailedHookException):
            return f"a template hook failed ({exc}); nothing was created. See the line above."
        if isinstance(exc, cc.RepositoryNotFound):
            return f"template not found ({exc}); see `{PROG} templates`."
    if isinstance(exc, PrefectETLBlocksError):
        return str(exc)
    try:
        from prefect_etl_blocks.tools.scaffold import AnswerError
    except ImportError:  # pragma: no cover - the templates' dependencies are missing
        AnswerError = None  # noqa: N806
    if AnswerError is not None and isinstance(exc, AnswerError):
        return str(exc)
    if isinstance(exc, ValueError) and (raised_by_us(exc) or is_validation_error(exc)):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return None


def raised_by_us(exc: BaseException) -> bool:
    """``True`` when the innermost frame that raised ``exc`` is in this package."""
    package = str(Path(__file__).resolve().parent.parent)  # the package folder, not tools/
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and str(Path(last.tb_frame.f_code.co_filename).resolve()).startswith(
        package
    )


def is_validation_error(exc: BaseException) -> bool:
    """pydantic's ``ValidationError``: a block field given a value it refuses."""
    return type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic")
