"""Tooling on top of everything: the ``prefect-etl`` CLI, doctor, scaffolding, registration, demo."""
