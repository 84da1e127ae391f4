"""What a block needs to reach S3 (or MinIO and other S3-compatible stores) with prefect-aws
credentials: the ``storage_options`` Polars' object-store reader takes, and a boto3 client
for listing.

Example:
    ```python
    from prefect_aws import AwsCredentials
    from prefect_etl_blocks.blocks.object_store import polars_storage_options

    credentials = AwsCredentials(
        aws_access_key_id="minio",
        aws_secret_access_key="minio-secret",
        aws_client_parameters={"endpoint_url": "http://127.0.0.1:9000"},
    )
    options = polars_storage_options(credentials, {"aws_region": "eu-west-1"})
    assert options["aws_allow_http"] == "true" and options["aws_region"] == "eu-west-1"
    ```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefect_aws import AwsCredentials


def polars_storage_options(credentials: AwsCredentials | None, extra: Mapping[str, Any]) -> dict[str, str]:
    """Polars ``storage_options`` from ``credentials`` (keys, region, endpoint URL;
    ``aws_allow_http`` as the string ``"true"`` for an ``http://`` endpoint), then overridden
    by ``extra`` (values that are not strings are JSON-encoded)."""
    options: dict[str, str] = {}
    if credentials is not None:
        if credentials.aws_access_key_id:
            options["aws_access_key_id"] = credentials.aws_access_key_id
        if credentials.aws_secret_access_key:
            options["aws_secret_access_key"] = credentials.aws_secret_access_key.get_secret_value()
        if credentials.aws_session_token:
            options["aws_session_token"] = credentials.aws_session_token
        if credentials.region_name:
            options["aws_region"] = credentials.region_name
        endpoint = credentials.aws_client_parameters.endpoint_url
        if endpoint:
            options["aws_endpoint_url"] = str(endpoint)
            if str(endpoint).startswith("http://"):
                options["aws_allow_http"] = "true"
    for key, value in extra.items():
        options[key] = value if isinstance(value, str) else json.dumps(value)
    return options


def s3_client(credentials: AwsCredentials | None, options: Mapping[str, str]) -> Any:
    """A boto3 S3 client: the credentials' own when there are credentials, else one built from
    Polars-style ``options`` (endpoint, keys, region)."""
    if credentials is not None:
        return credentials.get_s3_client()
    import boto3  # without credentials only; prefect-aws imports it for get_s3_client itself

    return boto3.client(
        "s3",
        endpoint_url=options.get("aws_endpoint_url") or options.get("endpoint_url"),
        aws_access_key_id=options.get("aws_access_key_id"),
        aws_secret_access_key=options.get("aws_secret_access_key"),
        aws_session_token=options.get("aws_session_token"),
        region_name=options.get("aws_region") or options.get("region"),
    )
