"""The blocks: thin Prefect ``Block`` facades over the core (DuckDB, DuckLake, Parquet, result
storage, e-mail). Each module is imported on its own, when its block is first used.
"""
