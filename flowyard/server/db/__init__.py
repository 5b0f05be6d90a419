"""Flowyard's tables, beside MLflow's in the same database."""
