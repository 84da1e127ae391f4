"""What the blocks build on from Prefect: its private API (``compat``, in one place), the
``polars-parquet`` serializer and lineage events. Imports Prefect and the core, never a block.
"""
