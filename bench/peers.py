"""The parsers people use today, one per protocol: plain reconstructions for the benchmarks.

These are NOT copies of any project's code. Each is a faithful, plain implementation of the
approach the common open-source Python readers take for that device, written here so that
`bench/whole_program.py` can time sessiond against them on the same bytes:

- Masimo "ASCII 1": read a line, split it into `KEY=value` tokens, put them in a dict, parse
  the device clock with `strptime`, one record per line (the approach of most Rad-8 / Root
  serial readers and of OpenICE's Python ports).
- Nonin DF7: a frame-by-frame receiver: take 5 bytes, check status bit 7 and the checksum,
  start a packet at SYNC, collect 25 frames, then decode HR / SpO2 from the packet's VALUE
  bytes (the approach of the Pufferfish firmware's PacketReceiver and its Python ports).
- Contec CMS50 legacy (5-byte packets, 19200 8O1): a byte-by-byte loop over the buffer that
  starts a packet at each sync byte (bit 7 set) and makes one object per complete packet,
  checking the bit-7 pattern and reading each field with bit operations (the approach of
  atbrask/cms50dplus's `getLiveData` and `LiveDataPoint`).
- Contec CMS50 V7.0 (9-byte packets, 115200 8N1): a per-packet loop over the buffer: find the
  type byte 0x01, take 9 bytes, check bit 7 of the 8 that follow, restore the high bits from
  byte 1 and make one object per packet (the approach of the V7 readers such as
  AndreasZachariae/cms50dplus-driver and albertcbraun/CMS50FW, without their string work).

Every peer is fed bytes in chunks (`feed`) and returns one object per frame/packet/line, the
way those readers yield them; none of them raises on noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# --------------------------------------------------------------------------------------------
# Masimo ASCII 1: readline, split, dict, strptime
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MasimoRecord:
    device_time: datetime
    spo2: int | None
    pr: int | None
    pi: float | None
    exc: int


class MasimoPeer:
    """Line by line: split into tokens, a dict of `KEY=value`, `strptime` for the clock."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[MasimoRecord]:
        self.buf += data
        out: list[MasimoRecord] = []
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                return out
            raw, self.buf = self.buf[:end], self.buf[end + 1 :]
            record = self.line(raw.decode("ascii", "replace").strip())
            if record is not None:
                out.append(record)

    @staticmethod
    def line(text: str) -> MasimoRecord | None:
        if len(text) < 18:
            return None
        fields = dict(tok.split("=", 1) for tok in text[18:].split() if "=" in tok)
        if "SPO2" not in fields or "BPM" not in fields:
            return None
        try:
            device_time = datetime.strptime(text[:17], "%m/%d/%y %H:%M:%S")  # noqa: DTZ007
        except ValueError:
            return None
        spo2 = None if "--" in fields["SPO2"] else int(fields["SPO2"].rstrip("%"))
        pr = None if "--" in fields["BPM"] else int(fields["BPM"])
        pi_raw = fields.get("PI", "--")
        pi = None if "--" in pi_raw else float(pi_raw.rstrip("%"))
        exc = int(fields.get("EXC", "0"), 16)
        return MasimoRecord(device_time, spo2, pr, pi, exc)


# --------------------------------------------------------------------------------------------
# Nonin DF7: frame by frame, checksum, 25-frame packets
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class NoninPacket:
    status: int
    spo2: int | None
    pr: int | None
    pleth: list[int]


class NoninDf7Peer:
    """A packet receiver: one frame at a time, SYNC starts a packet, 25 frames end it."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.frames: list[tuple[int, int, int]] | None = None

    def feed(self, data: bytes) -> list[NoninPacket]:
        buf = self.buf
        buf += data
        out: list[NoninPacket] = []
        i, n = 0, len(buf)
        while n - i >= 5:
            status, msb, lsb, value, check = buf[i : i + 5]
            if not status & 0x80 or (status + msb + lsb + value) & 0xFF != check:
                self.frames = None  # a lost frame breaks the packet: hunt for the next SYNC
                i += 1
                continue
            i += 5
            if status & 0x01:
                self.frames = []
            elif self.frames is None:
                continue
            self.frames.append((status, (msb << 8) | lsb, value))
            if len(self.frames) == 25:
                out.append(self.packet(self.frames))
                self.frames = None
        del buf[:i]
        return out

    @staticmethod
    def packet(frames: list[tuple[int, int, int]]) -> NoninPacket:
        status = 0
        for s, _, _ in frames:
            status |= s
        hr = ((frames[0][2] & 0x03) << 7) | (frames[1][2] & 0x7F)
        spo2 = frames[2][2]
        return NoninPacket(
            status=status,
            spo2=None if spo2 == 127 or status & 0x48 else spo2,
            pr=None if hr == 511 or status & 0x48 else hr,
            pleth=[p for _, p, _ in frames],
        )


# --------------------------------------------------------------------------------------------
# Contec: one object per packet
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ContecPoint:
    signal: int
    finger_out: bool
    searching: bool
    pleth: int
    bar: int
    pr: int
    spo2: int


class ContecLegacyPeer:
    """Byte by byte: a sync byte (bit 7) starts a packet; 5 bytes make a LiveDataPoint."""

    def __init__(self) -> None:
        self.packet = [0] * 5
        self.idx = 0

    def feed(self, data: bytes) -> list[ContecPoint]:
        out: list[ContecPoint] = []
        packet, idx = self.packet, self.idx
        for byte in data:
            if byte & 0x80:
                if idx == 5 and packet[0] & 0x80:
                    point = self.point(packet)
                    if point is not None:
                        out.append(point)
                packet = [0] * 5
                idx = 0
            if idx < 5:
                packet[idx] = byte
                idx += 1
        self.packet, self.idx = packet, idx
        return out

    @staticmethod
    def point(p: list[int]) -> ContecPoint | None:
        if [b & 0x80 != 0 for b in p] != [True, False, False, False, False]:
            return None
        return ContecPoint(
            signal=p[0] & 0x0F,
            finger_out=bool(p[0] & 0x10),
            searching=bool(p[2] & 0x20),
            pleth=p[1],
            bar=p[2] & 0x0F,
            pr=((p[2] & 0x40) << 1) | (p[3] & 0x7F),
            spo2=p[4] & 0x7F,
        )


class ContecV7Peer:
    """Packet by packet: type byte 0x01, then 8 bytes with bit 7 set; byte 1 holds bit 7s."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[ContecPoint]:
        buf = self.buf + data
        out: list[ContecPoint] = []
        i, n = 0, len(buf)
        while n - i >= 9:
            if buf[i] != 0x01:
                i += 1
                continue
            p = buf[i : i + 9]
            if not all(b & 0x80 for b in p[1:]):
                i += 1
                continue
            hb = p[1]
            d = [(p[k + 2] & 0x7F) | (((hb >> k) & 1) << 7) for k in range(7)]
            out.append(
                ContecPoint(
                    signal=d[0] & 0x0F,
                    finger_out=bool(d[0] & 0x80),
                    searching=bool(d[1] & 0x80),
                    pleth=d[1] & 0x7F,
                    bar=d[2] & 0x0F,
                    pr=d[3],
                    spo2=d[4],
                )
            )
            i += 9
        self.buf = buf[i:]
        return out


PEERS = {
    "masimo-ascii1": MasimoPeer,
    "nonin-df7": NoninDf7Peer,
    "contec-v7": ContecV7Peer,
    "contec-legacy": ContecLegacyPeer,
}
