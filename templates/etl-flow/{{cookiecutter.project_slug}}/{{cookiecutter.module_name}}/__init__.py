"""{{ cookiecutter.project_name | replace('"', "'") }}: a Prefect flow built with prefect-etl-blocks."""
