"""`[sim]`: what `sessiond demo` simulates."""

from __future__ import annotations

from sessiond.settings import Strict


class SimConfig(Strict):
    #: A scenario file; empty: the built-in demo scenario.
    scenario: str = ""
