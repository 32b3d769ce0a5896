"""Bedside devices: sans-I/O protocol decoders and the serial links that feed them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessiond.devices.decoder import Decoder

#: The module and class of each protocol's decoder (DESIGN §3), imported when a port uses it
#: (the Nonin decoders need numpy; `sessiond replay` of a Masimo capture does not). All of
#: them decode captures in replay; live links need a protocol's start and keep-alive
#: commands too (see config `decoder`).
_DECODERS = {
    "masimo-ascii1": ("sessiond.devices.masimo", "MasimoAscii1Decoder"),
    "nonin-df7": ("sessiond.devices.nonin", "NoninDf7Decoder"),
    "nonin-df2": ("sessiond.devices.nonin", "NoninDf2Decoder"),
    "nonin-ascii": ("sessiond.devices.nonin", "NoninAsciiDecoder"),
    "contec-v7": ("sessiond.devices.contec", "ContecV7Decoder"),
    "contec-legacy": ("sessiond.devices.contec", "ContecLegacyDecoder"),
    "suntech-advantage": ("sessiond.devices.suntech", "SuntechAdvantageDecoder"),
}
#: The protocol names a port may declare.
PROTOCOLS = frozenset(_DECODERS)


def decoder_class(protocol: str) -> type[Decoder]:
    """The decoder class of `protocol`; `ValueError` naming the known ones when unknown."""
    try:
        module, name = _DECODERS[protocol]
    except KeyError:
        msg = f"unknown decoder {protocol!r} (known: {', '.join(sorted(_DECODERS))})"
        raise ValueError(msg) from None
    cls: type[Decoder] = getattr(importlib.import_module(module), name)
    return cls


def make_decoder(protocol: str, *, device: str) -> Decoder:
    """A fresh decoder for `protocol` on the port named `device`."""
    return decoder_class(protocol)(device=device)
