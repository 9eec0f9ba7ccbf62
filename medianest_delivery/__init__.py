"""MediaNest delivery: pure decision logic, the local stack and the CLI.

Prefect flows live in ``flows/``, tasks in ``tasks/`` and blocks in ``blocks/``;
this package holds what they share and has no Prefect imports outside ``cli``.
"""
