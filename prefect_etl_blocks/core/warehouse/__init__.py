"""The warehouse session the blocks hold: one connection at a time (or held), the fetch
contract's remembered results, and a backend for a DuckDB file or a DuckLake catalog.

``Session`` (:mod:`.session`) does the work; ``FileBackend`` (:mod:`.duckdb_file`) and
``LakeBackend`` (:mod:`.lake`) say how to open, commit and name tables. Prefect-free.
"""
