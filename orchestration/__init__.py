"""Partitioned Meltano runs of tap-conversations on Dagster (see docs/orchestration.md)."""
