"""sessiond: in-session monitoring and set-and-setting controller for ketamine-therapy rooms."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Looked up when first asked for (`--version`, exports, MQTT): importing importlib.metadata
    # up front would slow the start of every command.
    if name != "__version__":
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        found = version("sessiond")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
