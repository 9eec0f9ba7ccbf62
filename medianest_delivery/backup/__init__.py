"""Backups: storage, encryption, manifests, retention, WAL archiving and restore.

Modules here hold the logic and the I/O against PostgreSQL tools and the
repository; Prefect tasks and flows wrap them (tasks/backup.py, flows/backup*.py).
"""
