"""Prefect glue above the blocks: tasks, cache policies and hooks for flow authors."""
