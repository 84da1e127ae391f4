"""Persisted results on S3: save the S3ResultStorage block named in settings.RESULT_STORAGE_BLOCK.

    python -m {{ cookiecutter.module_name }}.storage BUCKET [FOLDER] [ENDPOINT_URL]
"""

import sys

from prefect_aws import AwsCredentials
from prefect_etl_blocks import S3ResultStorage

from {{ cookiecutter.module_name }}.settings import RESULT_STORAGE_BLOCK


def save_result_storage(bucket: str, folder: str = "results", endpoint_url: str | None = None) -> None:
    """Save the result storage block (credentials come from the usual AWS environment)."""
    params = {"endpoint_url": endpoint_url} if endpoint_url else {}
    S3ResultStorage(
        bucket_name=bucket, bucket_folder=folder, credentials=AwsCredentials(aws_client_parameters=params)
    ).save(RESULT_STORAGE_BLOCK.split("/", 1)[1], overwrite=True)


if __name__ == "__main__":
    save_result_storage(*sys.argv[1:])
