"""Prefect's block standards (``BlockStandardTestSuite``) on every block we export, without the
logo download (no network here): the logo must be an https URL instead."""

from __future__ import annotations

import re

import pytest
from prefect.blocks.core import Block

import prefect_etl_blocks

BLOCKS = sorted(
    (obj for name in prefect_etl_blocks.__all__ if isinstance(obj := getattr(prefect_etl_blocks, name), type) and issubclass(obj, Block)),
    key=lambda cls: cls.__name__,
)


def test_every_block_of_the_issue_is_exported() -> None:
    names = {cls.__name__ for cls in BLOCKS}
    assert {"DuckDBConnection", "ParquetSource", "S3ResultStorage"} <= names


@pytest.fixture(params=BLOCKS, ids=lambda cls: cls.__name__)
def block(request: pytest.FixtureRequest) -> type[Block]:
    return request.param


def test_has_a_description(block: type[Block]) -> None:
    assert block.get_description()


def test_has_a_documentation_url(block: type[Block]) -> None:
    assert str(block._documentation_url).startswith("https://")


def test_has_an_https_logo(block: type[Block]) -> None:
    assert str(block._logo_url).startswith("https://") and str(block._logo_url).endswith(".png")


def test_all_fields_have_a_description(block: type[Block]) -> None:
    for name, field in block.model_fields.items():
        if Block.annotation_refers_to_block_class(field.annotation):
            continue
        assert field.description, f"{block.__name__} is missing a description on {name}"
        assert field.description.endswith("."), f"{name} description on {block.__name__} does not end with a period"


def test_has_a_valid_code_example(block: type[Block]) -> None:
    example = block.get_code_example()
    assert example is not None
    assert re.search(rf"from .* import {block.__name__}", example)
    assert re.search(rf'.* = {block.__name__}\.load\("BLOCK_NAME"\)', example)


def test_block_schema_has_our_slug(block: type[Block]) -> None:
    slug = block.get_block_type_slug()
    assert slug == re.sub(r"[^a-z0-9]+", "-", block._block_type_name.lower()).strip("-")
