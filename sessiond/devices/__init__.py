"""Bedside devices: sans-I/O protocol decoders and the serial links that feed them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessiond.devices.contec import ContecLegacyDecoder, ContecV7Decoder
from sessiond.devices.masimo import MasimoAscii1Decoder
from sessiond.devices.nonin import NoninAsciiDecoder, NoninDf2Decoder, NoninDf7Decoder
from sessiond.devices.suntech import SuntechAdvantageDecoder

if TYPE_CHECKING:
    from sessiond.devices.decoder import Decoder

#: Decoder classes by the protocol names of DESIGN §3. All of them decode captures in replay;
#: live links need a protocol's start and keep-alive commands too (see config `decoder`).
DECODERS: dict[str, type[Decoder]] = {
    cls.protocol: cls
    for cls in (
        MasimoAscii1Decoder,
        NoninDf7Decoder,
        NoninDf2Decoder,
        NoninAsciiDecoder,
        ContecV7Decoder,
        ContecLegacyDecoder,
        SuntechAdvantageDecoder,
    )
}


def make_decoder(protocol: str, *, device: str) -> Decoder:
    """A fresh decoder for `protocol` on the port named `device`."""
    try:
        cls = DECODERS[protocol]
    except KeyError:
        msg = f"unknown decoder {protocol!r} (known: {', '.join(sorted(DECODERS))})"
        raise ValueError(msg) from None
    return cls(device=device)
