"""Prefect tasks: one piece of I/O each, returning plain data."""
