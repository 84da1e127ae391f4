{{ (cookiecutter.project_name ~ ": a Prefect flow built with prefect-etl-blocks.") | pyrepr }}
