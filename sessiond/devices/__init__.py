"""Bedside devices: sans-I/O protocol decoders and the serial links that feed them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.devices.masimo import MasimoAscii1Decoder

if TYPE_CHECKING:
    from sessiond.devices.decoder import Decoder

#: Decoder classes by the protocol names of DESIGN §3.
DECODERS: dict[str, type[Decoder]] = {
    MasimoAscii1Decoder.protocol: MasimoAscii1Decoder,
}


def make_decoder(protocol: str, *, device: str) -> Decoder:
    """A fresh decoder for `protocol` on the port named `device`."""
    try:
        cls = DECODERS[protocol]
    except KeyError:
        msg = f"unknown decoder {protocol!r} (known: {', '.join(sorted(DECODERS))})"
        raise ValueError(msg) from None
    return cls(device=device)
