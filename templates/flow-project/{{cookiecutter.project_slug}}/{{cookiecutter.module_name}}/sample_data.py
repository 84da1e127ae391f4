"""Write sample sales data where the flow reads it: ``python -m {{ cookiecutter.module_name }}.sample_data``.

The files match ``settings.SOURCE_PATH`` (a folder, a glob such as ``data/sales/*.parquet``, or
one ``.parquet`` file), so ``python -m {{ cookiecutter.module_name }}.flow`` works right after
the project is generated. Options: ``--rows N`` (default 100000), ``--files N`` (default 3).
"""

import argparse
import glob
from pathlib import Path

from prefect_etl_blocks.sales import write_sample_sales

from {{ cookiecutter.module_name }}.settings import SOURCE_PATH


def sample_folder(source_path: str = SOURCE_PATH) -> Path:
    """The local folder the sample files go to, for a folder, a glob or a file path."""
    if source_path.startswith(("s3://", "s3a://")):
        raise SystemExit(
            f"SOURCE_PATH {source_path!r} is on S3: upload your own files there, or point "
            "the flow's source_path parameter at a local folder to try it with sample data."
        )
    if glob.has_magic(source_path):
        parts = Path(source_path).parts
        fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if glob.has_magic(p))]]
        return Path(*fixed) if fixed else Path(".")
    path = Path(source_path)
    return path.parent if path.suffix == ".parquet" else path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args(argv)
    folder = sample_folder()
    paths = write_sample_sales(folder, rows=args.rows, files=args.files)
    print(f"wrote {args.rows} sample rows in {len(paths)} files under {folder}")


if __name__ == "__main__":
    main()
