"""The alarm engine as it was before issue 13 (one full pass per reading), kept verbatim.

`rules.py`, `bp.py` and `alarms.py` are copies of `sessiond/session/` at that point, with only
their imports pointed here. They are the old path, kept for comparison until it is gone:
`tests/test_engine_differential.py` runs both engines on the same streams and asserts the same
alarms, and `bench/engine.py` times them side by side. Do not fix or restyle them.
"""
