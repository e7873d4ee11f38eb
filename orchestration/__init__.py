"""Partitioned Meltano runs of tap-conversations on Dagster (see README, "Running at scale")."""
