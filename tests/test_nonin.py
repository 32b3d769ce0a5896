"""nonin-df2/df7/ascii: the vectors of reference/devices.md §3, whole, byte by byte, in chunks.

A Nonin binary restates its numerics 3 times a second: it gives a Reading when SpO2, PR or
the flags change and at least once a second otherwise (DESIGN §6), every packet counts in
`records`, and the pleth is a waveform (`waveform()`), not readings. The ASCII output gives a
Reading per line (one a second).
"""

from __future__ import annotations

import random
import sys
import weakref
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.devices.decoder import EMIT_EVERY_S, Decoder, SendsWaveform
from sessiond.devices.nonin import (
    BULK_BYTES,
    MAX_LINE,
    MAX_PENDING,
    PACKET_LEN,
    NoninAsciiDecoder,
    NoninDf2Decoder,
    NoninDf7Decoder,
)
from sessiond.model import Quality, Reading
from tests.repeating import check_any_chunking

# --- helpers ------------------------------------------------------------------------------

Values = tuple[int | None, int | None, Quality]
D = TypeVar("D", bound=Decoder)
Binary = NoninDf2Decoder | NoninDf7Decoder


def values(r: Reading) -> Values:
    return (r.spo2, r.pr, r.flags)


def numbers(r: Reading) -> tuple[int | None, int | None, Quality]:
    return (r.spo2, r.pr, r.flags)


def counters(dec: NoninDf2Decoder | NoninDf7Decoder) -> tuple[int, int, int, int]:
    return (dec.records, dec.frames_bad, dec.bytes_skipped, dec.packets_incomplete)


#: The waveform a binary decoder gave in `decode` (`pleth_of`).
_PLETH: weakref.WeakKeyDictionary[Decoder, list[int]] = weakref.WeakKeyDictionary()


def decode(dec: D, chunks: list[bytes], t: float = 0.0) -> tuple[list[Reading], D]:
    """The chunks fed at one time `t` (a binary decoder: Readings on change only); its
    waveform is then `pleth_of(dec)`."""
    out: list[Reading] = []
    pleth: list[int] = []
    sends: object = dec
    for chunk in chunks:
        out += dec.feed(chunk, t)
        if isinstance(sends, SendsWaveform):
            pleth += sends.waveform()
    _PLETH[dec] = pleth
    return out, dec


def pleth_of(dec: Decoder) -> list[int]:
    return _PLETH[dec]


def one_a_second(dec: D, packets: list[bytes]) -> tuple[list[Reading], D]:
    """One packet per read, a second apart: every packet gives a Reading."""
    out: list[Reading] = []
    for i, packet in enumerate(packets):
        out += dec.feed(packet, float(i))
    return out, dec


def random_chunks(stream: bytes, seed: int, biggest: int = 40) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(stream):
        n = rng.randint(1, biggest)
        chunks.append(stream[i : i + n])
        i += n
    return chunks


def bytewise(stream: bytes) -> list[bytes]:
    return [stream[i : i + 1] for i in range(len(stream))]


def chunked(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def splits(stream: bytes) -> list[list[bytes]]:
    """The chunking triad: all at once, byte by byte, random chunks."""
    return [[stream], bytewise(stream), *(random_chunks(stream, seed) for seed in range(3))]


def hexframes(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


# --- DF2 golden vectors (devices.md §3.2) ------------------------------------------------

# Onyx 9560 over Bluetooth SPP (mattjlewis): 4 frames of a packet, a whole packet from the
# SYNC frame (0181...), and the next SYNC frame.
CAPTURED_DF2 = hexframes(
    "01804900CA 0180464A11 01804400C5 01804300C4 01814300C5 0180434A0E 0180436024 0180439458 "
    "01804300C4 01804100C2 01803E17D6 01803C04C1 018039601A 0180366017 0180356016 01803400B5 "
    "01803400B5 01803400B5 0180354A00 0180366017 0180376018 01803A00BB 01804000C1 01804A00CB "
    "0180574A22 01806900EA 01807C4A47 0180900011 0180A10022 0181AF0031"
)
# VALUE bytes of the packet: HR MSB 00, LSB 4A → 74; SpO2 60 → 96 [D].
CAPTURED_PLETH = (
    0x43, 0x43, 0x43, 0x43, 0x43, 0x41, 0x3E, 0x3C, 0x39, 0x36, 0x35, 0x34, 0x34, 0x34, 0x35,
    0x36, 0x37, 0x3A, 0x40, 0x4A, 0x57, 0x69, 0x7C, 0x90, 0xA1,
)  # fmt: skip

# pufferfish TestNoninOEM3.cpp (OEM III): HR 72, SpO2 97, revision 48.
PUFFERFISH = hexframes(
    "01 81 01 00 83 | 01 80 01 48 CA | 01 80 01 61 E3 | 01 80 01 30 B2 | "
    + "01 80 01 00 82 | " * 4
    + "01 80 01 61 E3 | " * 3
    + "01 80 01 00 82 | " * 3
    + "01 80 01 48 CA | "
    + "01 80 01 61 E3 | " * 2
    + "01 80 01 00 82 | " * 3
    + "01 80 01 48 CA | 01 80 01 00 82 | 01 80 01 48 CA | "
    + "01 80 01 00 82 | " * 2
)
PUFFERFISH_VALUES: Values = (97, 72, Quality.NONE)
PUFFERFISH_PLETH = (1,) * 25


def test_pufferfish_packet_is_125_bytes_of_valid_frames():
    assert len(PUFFERFISH) == PACKET_LEN
    for i in range(0, PACKET_LEN, 5):
        assert sum(PUFFERFISH[i : i + 4]) & 0xFF == PUFFERFISH[i + 4]


@pytest.mark.parametrize("chunks", splits(PUFFERFISH * 3), ids=["whole", "bytes", "r0", "r1", "r2"])
def test_df2_pufferfish_packet_decodes_to_hr_72_spo2_97(chunks):
    """Three equal packets at one time: one Reading, three records, 75 pleth samples."""
    readings, dec = decode(NoninDf2Decoder(device="spo2"), chunks)
    assert [values(r) for r in readings] == [PUFFERFISH_VALUES]
    assert counters(dec) == (3, 0, 0, 0)
    assert pleth_of(dec) == list(PUFFERFISH_PLETH * 3)
    assert readings[0].device == "spo2"
    assert readings[0].pi is None
    assert readings[0].device_time is None


@pytest.mark.parametrize("chunks", splits(CAPTURED_DF2), ids=["whole", "bytes", "r0", "r1", "r2"])
def test_df2_captured_frames_decode_the_one_whole_packet(chunks):
    """Frames before the first SYNC are skipped; the packet decodes; the next SYNC waits."""
    readings, dec = decode(NoninDf2Decoder(device="spo2"), chunks)
    assert [values(r) for r in readings] == [(96, 74, Quality.NONE)]
    assert pleth_of(dec) == list(CAPTURED_PLETH)
    assert counters(dec) == (1, 0, 4 * 5, 0)
    assert dec._pending == CAPTURED_DF2[-5:]


def test_df2_bad_checksum_rejects_the_frame_and_its_packet():
    """pufferfish: checksum CB instead of CA is a framing error; the next packet decodes."""
    bad = PUFFERFISH.replace(bytes.fromhex("01800148CA"), bytes.fromhex("01800148CB"), 1)
    readings, dec = decode(NoninDf2Decoder(device="spo2"), [bad + PUFFERFISH])
    assert [values(r) for r in readings] == [PUFFERFISH_VALUES]
    assert counters(dec) == (1, 1, PACKET_LEN, 1)


def test_df2_status_with_bit_7_low_rejects_the_frame_even_with_a_good_checksum():
    """pufferfish: status 7F is a framing error (here with its checksum made right)."""
    low = bytes([0x01, 0x7F, 0x01, 0x48, (0x01 + 0x7F + 0x01 + 0x48) & 0xFF])
    bad = PUFFERFISH.replace(bytes.fromhex("01800148CA"), low, 1)
    readings, dec = decode(NoninDf2Decoder(device="spo2"), [bad + PUFFERFISH])
    assert [values(r) for r in readings] == [PUFFERFISH_VALUES]
    assert counters(dec) == (1, 1, PACKET_LEN, 1)


def test_df2_missing_frames_drop_the_packet_and_decoding_resumes_at_the_next_sync():
    """pufferfish `missed_data`: whole frames lost; what is left of the packet is skipped."""
    short = PUFFERFISH[:50] + PUFFERFISH[65:]  # frames 10..12 lost
    readings, dec = decode(NoninDf2Decoder(device="spo2"), [short + PUFFERFISH + PUFFERFISH])
    assert [values(r) for r in readings] == [PUFFERFISH_VALUES]  # the second repeats it
    # Frames lost whole leave every frame good: nothing rejected, one packet incomplete.
    assert counters(dec) == (2, 0, len(short), 1)


def test_df2_truncated_packet_then_sync():
    """A packet cut short by a reconnect: its frames are skipped, the next one decodes."""
    stream = PUFFERFISH[:72] + PUFFERFISH
    readings, dec = decode(NoninDf2Decoder(device="spo2"), random_chunks(stream, 7))
    assert [values(r) for r in readings] == [PUFFERFISH_VALUES]
    # The cut frame (2 bytes) is rejected, then hunting finds the next SYNC.
    assert counters(dec) == (1, 1, 72, 1)


DF2_JUNK = bytes([0x00, 0x80, 0xFF, 0x13, 0x7E, 0x02, 0x81, 0x11])  # no 0x01: no frame start


@pytest.mark.parametrize("seed", range(4))
def test_df2_garbage_before_between_and_after_resynchronises_and_counts(seed):
    stream = DF2_JUNK + PUFFERFISH + DF2_JUNK + PUFFERFISH + DF2_JUNK
    for chunks in ([stream], bytewise(stream), random_chunks(stream, seed)):
        readings, dec = decode(NoninDf2Decoder(device="spo2"), chunks)
        assert [values(r) for r in readings] == [PUFFERFISH_VALUES]
        assert pleth_of(dec) == list(PUFFERFISH_PLETH * 2)
        # Junk before is hunting (nothing was due); junk between breaks a due frame; the
        # trailing junk is shorter than a packet and waits for more.
        assert counters(dec) == (2, 1, 2 * len(DF2_JUNK), 0)
        assert dec._pending == DF2_JUNK


# --- DF7: synthetic packets --------------------------------------------------------------


def df7_frame(status: int, pleth: int, value: int) -> bytes:
    head = [0x80 | status, pleth >> 8, pleth & 0xFF, value]
    return bytes([*head, sum(head) & 0xFF])


def df7_packet(
    *,
    hr: int = 72,
    spo2: int = 97,
    status: int | list[int] = 0,
    pleth: list[int] | None = None,
    display: tuple[int, int] = (88, 180),
) -> bytes:
    """One DF7 packet: SYNC on frame 1, VALUE table of §3.2 with HR in 9 bits.

    The "-D" display values (SpO2-D, HR-D) differ on purpose: they must never be read.
    """
    table = [0] * 25
    table[0], table[1], table[2], table[3] = (hr >> 7) & 0x03, hr & 0x7F, spo2, 48
    table[8], table[19], table[20] = display[0], (display[1] >> 7) & 0x03, display[1] & 0x7F
    statuses = status if isinstance(status, list) else [status] * 25
    samples = pleth if pleth is not None else [30000 + 1400 * k for k in range(25)]
    return b"".join(
        df7_frame(statuses[k] | (0x01 if k == 0 else 0), samples[k], table[k]) for k in range(25)
    )


PLETH = tuple(30000 + 1400 * k for k in range(25))  # crosses 0x8000: MSBs with bit 7 set


def test_df7_packet_decodes_values_and_16_bit_pleth():
    dec = NoninDf7Decoder(device="ox")
    (r,) = dec.feed(df7_packet(), 3.0)
    assert values(r) == (97, 72, Quality.NONE)
    assert (r.t, r.device, r.pi) == (3.0, "ox", None)
    assert dec.waveform() == PLETH


@pytest.mark.parametrize("hr", [0, 1, 127, 128, 129, 200, 255, 256, 300, 321])
def test_df7_heart_rate_uses_both_bytes_of_the_9_bit_field(hr):
    """HR = (MSB & 3) << 7 | LSB & 0x7F: the `MSB << 8` bug would read 128 as 256."""
    (r,) = NoninDf7Decoder(device="ox").feed(df7_packet(hr=hr), 0.0)
    assert r.pr == hr


@pytest.mark.parametrize(
    ("hr", "spo2", "expected"),
    [(511, 97, (97, None)), (72, 127, (None, 72)), (511, 127, (None, None))],
)
def test_df7_no_value_codes_are_none_never_numbers(hr, spo2, expected):
    (r,) = NoninDf7Decoder(device="ox").feed(df7_packet(hr=hr, spo2=spo2), 0.0)
    assert (r.spo2, r.pr) == expected
    assert r.flags == Quality.NONE


def test_df7_recording_values_are_used_not_the_display_values():
    """SpO2-D / HR-D hold the last number for 10 s after the finger is removed."""
    (r,) = NoninDf7Decoder(device="ox").feed(df7_packet(hr=511, spo2=127, display=(97, 72)), 0.0)
    assert (r.spo2, r.pr) == (None, None)


def one_frame(bits: int, at: int = 7) -> list[int]:
    return [bits if k == at else 0 for k in range(25)]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # Sensor disconnected on one frame: the whole packet has no numbers.
        (one_frame(0x40), (None, None, Quality.SENSOR_OFF)),
        (0x40, (None, None, Quality.SENSOR_OFF)),
        # Sensor alarm, "unusable data": no numbers either.
        (one_frame(0x08), (None, None, Quality.NO_SENSOR)),
        # Artifact and out of track keep their numbers with the flag, for the alarm gate.
        (one_frame(0x20), (97, 72, Quality.ARTIFACT)),
        (0x10, (97, 72, Quality.SEARCHING)),
        (one_frame(0x30, 3), (97, 72, Quality.SEARCHING | Quality.ARTIFACT)),
        (one_frame(0x20, 2), (97, 72, Quality.ARTIFACT)),
        (0x60, (None, None, Quality.SENSOR_OFF | Quality.ARTIFACT)),
        # Perfusion (bits 2..1): red is low perfusion; green and yellow carry no flag.
        (one_frame(0x04), (97, 72, Quality.LOW_PERFUSION)),
        (one_frame(0x02), (97, 72, Quality.NONE)),
        (one_frame(0x06), (97, 72, Quality.NONE)),
        # A green beat then a red one: the last beat counts (OR-ing would read yellow).
        ([0x02] * 12 + [0] * 3 + [0x04] * 10, (97, 72, Quality.LOW_PERFUSION)),
        ([0x04] * 12 + [0] * 3 + [0x02] * 10, (97, 72, Quality.NONE)),
    ],
)  # fmt: skip
def test_df7_status_bits_become_quality_flags_over_the_packet(status, expected):
    (r,) = NoninDf7Decoder(device="ox").feed(df7_packet(status=status), 0.0)
    assert numbers(r) == expected


def test_df7_perfusion_holds_between_beats_until_the_next_beat_or_sensor_loss():
    """Perfusion bits are set on beats only (12 frames); a packet without a beat keeps it."""
    red, green = [0x04] * 12 + [0] * 13, [0x02] * 12 + [0] * 13
    stream = b"".join(
        [
            df7_packet(status=red),
            df7_packet(),  # no beat: still red
            df7_packet(status=green),
            df7_packet(),  # no beat: still green
            df7_packet(status=red),
            df7_packet(status=0x08),  # sensor alarm: no pulse, no perfusion
            df7_packet(),
        ]
    )
    for chunks in (
        [stream],
        [stream[i : i + PACKET_LEN] for i in range(0, len(stream), PACKET_LEN)],
    ):
        # One packet a second: a Reading each.
        readings, _ = one_a_second(NoninDf7Decoder(device="ox"), chunks)
        if len(chunks) == 1:
            # All at once: a Reading at each change (red, green, red, sensor alarm, green).
            assert [r.flags for r in readings] == [
                Quality.LOW_PERFUSION, Quality.NONE, Quality.LOW_PERFUSION, Quality.NO_SENSOR,
                Quality.NONE,
            ]  # fmt: skip
            continue
        low = [bool(r.flags & Quality.LOW_PERFUSION) for r in readings]
        assert low == [True, True, False, False, True, False, False]


@pytest.mark.parametrize(("hr", "spo2"), [(72, 101), (72, 126), (72, 128), (72, 255), (322, 97)])
def test_df7_impossible_values_reject_the_packet(hr, spo2):
    stream = df7_packet(hr=hr, spo2=spo2) + df7_packet()
    readings, dec = decode(NoninDf7Decoder(device="ox"), [stream])
    assert [values(r) for r in readings] == [(97, 72, Quality.NONE)]
    assert counters(dec) == (1, 1, 0, 0)
    assert pleth_of(dec) == list(PLETH)  # not the rejected packet's


def test_df7_impossible_values_under_sensor_off_are_not_read():
    """With SNSD set the numbers are withheld, whatever the device put in them."""
    (r,) = NoninDf7Decoder(device="ox").feed(df7_packet(hr=400, spo2=200, status=0x40), 0.0)
    assert numbers(r) == (None, None, Quality.SENSOR_OFF)


DF7_SERIES = [
    df7_packet(hr=72, spo2=97),
    df7_packet(hr=128, spo2=96, status=one_frame(0x20)),
    df7_packet(hr=511, spo2=127, status=0x10),
    df7_packet(hr=300, spo2=88, pleth=[0xFFFF, 0x8181, 0x0101] + [0x8000] * 22),
    df7_packet(hr=60, spo2=99, status=0x40),
]
DF7_EXPECTED: list[Values] = [
    (97, 72, Quality.NONE),
    (96, 128, Quality.ARTIFACT),
    (None, None, Quality.SEARCHING),
    (88, 300, Quality.NONE),
    (None, None, Quality.SENSOR_OFF),
]
DF7_PLETH = [*PLETH, *PLETH, *PLETH, 0xFFFF, 0x8181, 0x0101, *(0x8000,) * 22, *PLETH]
DF7_STREAM = b"".join(DF7_SERIES)
DF7_JUNK = bytes([0x00, 0x7F, 0x13, 0x01, 0x55, 0x7E, 0x40])  # bit 7 low: no frame start


@pytest.mark.parametrize("chunks", splits(DF7_STREAM), ids=["whole", "bytes", "r0", "r1", "r2"])
def test_df7_series_decodes_whole_byte_by_byte_and_in_chunks(chunks):
    readings, dec = decode(NoninDf7Decoder(device="ox"), chunks)
    assert [values(r) for r in readings] == DF7_EXPECTED
    assert pleth_of(dec) == DF7_PLETH
    assert counters(dec) == (5, 0, 0, 0)
    assert dec._pending == b""


@pytest.mark.parametrize("seed", range(4))
def test_df7_garbage_before_between_and_after_resynchronises_and_counts(seed):
    stream = DF7_JUNK + DF7_SERIES[0] + DF7_JUNK + b"".join(DF7_SERIES[1:]) + DF7_JUNK
    for chunks in ([stream], bytewise(stream), random_chunks(stream, seed, 300)):
        readings, dec = decode(NoninDf7Decoder(device="ox"), chunks)
        assert [values(r) for r in readings] == DF7_EXPECTED
        assert pleth_of(dec) == DF7_PLETH
        assert counters(dec) == (5, 1, 2 * len(DF7_JUNK), 0)


def test_df7_reading_time_is_the_arrival_of_the_packet_end():
    dec = NoninDf7Decoder(device="ox")
    packet = df7_packet()
    assert dec.feed(packet[:100], 10.0) == []
    assert dec.waveform() == ()
    (r,) = dec.feed(packet[100:], 10.3)
    assert r.t == 10.3
    assert dec.waveform() == PLETH


def test_df7_frame_lost_mid_packet_by_a_byte_slip():
    """Two bytes lost inside frame 10: one bad frame, one packet dropped, then resync."""
    broken = DF7_SERIES[0][:52] + DF7_SERIES[0][54:]
    readings, dec = decode(NoninDf7Decoder(device="ox"), [broken + DF7_STREAM])
    assert [values(r) for r in readings] == DF7_EXPECTED
    assert counters(dec) == (5, 1, len(broken), 1)


def test_df7_a_sync_inside_a_packet_marks_it_incomplete():
    """A packet with 20 frames then a SYNC: frames were lost whole; the next packet decodes."""
    stream = DF7_SERIES[0][:100] + DF7_STREAM
    readings, dec = decode(NoninDf7Decoder(device="ox"), random_chunks(stream, 3, 200))
    assert [values(r) for r in readings] == DF7_EXPECTED
    assert counters(dec) == (5, 0, 100, 1)


def test_df2_stream_is_not_read_by_the_df7_decoder():
    """Every DF2 frame starts with 01 (bit 7 low): the DF7 decoder finds no packet in it."""
    readings, dec = decode(NoninDf7Decoder(device="ox"), [PUFFERFISH * 4])
    assert readings == []
    assert dec.records == 0


def test_df7_endless_noise_is_bounded():
    dec = NoninDf7Decoder(device="ox")
    rng = random.Random(5)
    for i in range(50):
        dec.feed(rng.randbytes(997), float(i))
        assert len(dec._pending) <= MAX_PENDING
    assert dec.bytes_skipped >= 50 * 997 - MAX_PENDING
    dec.feed(DF7_JUNK, 50.0)
    readings = dec.feed(DF7_STREAM, 51.0)
    assert [values(r) for r in readings] == DF7_EXPECTED


def test_big_chunks_keep_less_than_a_packet():
    dec = NoninDf7Decoder(device="ox")
    readings = dec.feed(DF7_STREAM * 40 + DF7_SERIES[0][:124], 0.0)
    assert len(readings) == 200  # consecutive packets differ: a Reading each
    assert dec._pending == DF7_SERIES[0][:124]
    assert len(dec.waveform()) == 200 * 25


def test_decoders_declare_their_link():
    for cls, name in (
        (NoninDf7Decoder, "nonin-df7"),
        (NoninDf2Decoder, "nonin-df2"),
        (NoninAsciiDecoder, "nonin-ascii"),
    ):
        dec: Decoder = cls(device="ox")
        assert dec.protocol == name
        assert (dec.serial.baudrate, dec.serial.bytesize, dec.serial.parity) == (9600, 8, "N")
        assert dec.streaming
        assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (0, 0, 0)
    assert NoninDf7Decoder.silence_timeout_s == NoninDf2Decoder.silence_timeout_s == 1.0
    assert NoninAsciiDecoder.silence_timeout_s == 2.5
    # The binary formats send their pleth as a waveform; the ASCII output has none.
    assert isinstance(NoninDf7Decoder(device="ox"), SendsWaveform)
    assert isinstance(NoninDf2Decoder(device="ox"), SendsWaveform)
    assert not isinstance(NoninAsciiDecoder(device="ox"), SendsWaveform)


# --- Readings on change and once a second; repeats are frames (DESIGN §6) ---------------


def df2_frame(status: int, pleth: int, value: int) -> bytes:
    head = [0x01, 0x80 | status, pleth & 0xFF, value]
    return bytes([*head, sum(head) & 0xFF])


def df2_packet(
    *, hr: int = 72, spo2: int = 97, status: int | list[int] = 0, pleth: list[int] | None = None
) -> bytes:
    """One DF2 packet: the DF7 packet's VALUE table, 8-bit pleth after the status byte."""
    table = [0] * 25
    table[0], table[1], table[2], table[3] = (hr >> 7) & 0x03, hr & 0x7F, spo2, 48
    statuses = status if isinstance(status, list) else [status] * 25
    samples = pleth if pleth is not None else [40 + 7 * k for k in range(25)]
    return b"".join(
        df2_frame(statuses[k] | (0x01 if k == 0 else 0), samples[k], table[k]) for k in range(25)
    )


PACKETS_PER_S = 3
MAKERS = {"df7": (NoninDf7Decoder, df7_packet), "df2": (NoninDf2Decoder, df2_packet)}


def new_binary(kind: str) -> Binary:
    dec: Binary = NoninDf7Decoder(device="ox") if kind == "df7" else NoninDf2Decoder(device="ox")
    return dec


def packet_of(kind: str, k: int, **kw) -> bytes:
    """Packet number `k` of a stream, its pleth counting up (to tell the packets apart)."""
    samples = [(25 * k + j) % 256 for j in range(25)]
    return MAKERS[kind][1](pleth=samples, **kw)


def seen(readings: list[Reading]) -> list[tuple[float, int | None, int | None, Quality]]:
    return [(round(r.t, 6), r.spo2, r.pr, r.flags) for r in readings]


@pytest.mark.parametrize("kind", ["df7", "df2"])
def test_a_steady_stream_gives_a_reading_once_a_second_and_each_change_at_once(kind):
    """4 s at 3 packets a second, one packet per read; PR 80 from 2 s, artifact at 3 1/3 s."""
    dec = new_binary(kind)
    out: list[Reading] = []
    pleth: list[int] = []
    for k in range(4 * PACKETS_PER_S):
        status = 0x20 if k == 10 else 0
        out += dec.feed(packet_of(kind, k, hr=72 if k < 6 else 80, status=status), k / 3)
        pleth += dec.waveform()
    assert [(round(t, 3), pr, flags) for t, _, pr, flags in seen(out)] == [
        (0.0, 72, Quality.NONE), (1.0, 72, Quality.NONE), (2.0, 80, Quality.NONE),
        (3.0, 80, Quality.NONE), (3.333, 80, Quality.ARTIFACT), (3.667, 80, Quality.NONE),
    ]  # fmt: skip
    assert dec.records == 12  # every packet counts, and is in the pleth
    assert pleth == [(25 * k + j) % 256 for k in range(12) for j in range(25)]
    assert EMIT_EVERY_S == 1.0


@pytest.mark.parametrize("kind", ["df7", "df2"])
def test_repeats_are_reported_as_frames(kind):
    """`feed_timed`: every packet's piece is a frame; only the Readings' pieces have one."""
    packets = [packet_of(kind, k, spo2=97 if k < 5 else 95) for k in range(9)]
    ends = np.cumsum([len(p) for p in packets]).astype(np.int64)
    times = np.arange(9) / PACKETS_PER_S
    timed = new_binary(kind).feed_timed(b"".join(packets), ends, times)
    # The first, its restatement a second later, the change, and its restatement.
    assert [(r.t, r.spo2) for r in timed.readings] == [
        (times[0], 97), (times[3], 97), (times[5], 95), (times[8], 95),
    ]  # fmt: skip
    assert timed.pieces == [0, 3, 5, 8]
    assert timed.frames.tolist() == list(range(9))


@pytest.mark.parametrize("kind", ["df7", "df2"])
async def test_a_link_tells_the_monitor_of_repeats_and_publishes_the_pleth(kind):
    """The live link: a repeat is `on_frames`, the pleth a `Waveform` per read."""
    from sessiond.clock import LoopClock  # noqa: PLC0415
    from sessiond.devices.link import SerialLink  # noqa: PLC0415
    from sessiond.model import DeviceStatus, Waveform  # noqa: PLC0415

    readings: list[Reading] = []
    frames: list[str] = []
    waves: list[Waveform] = []
    status: list[DeviceStatus] = []
    link = SerialLink(name="spo2", path="/dev/null", decoder=new_binary(kind), clock=LoopClock(),
                      on_readings=readings.extend, on_status=status.append,
                      on_frames=lambda device, _t: frames.append(device),
                      on_waveform=waves.append)  # fmt: skip
    for k in range(3):
        link.received(packet_of(kind, k))
    link.received(packet_of(kind, 3)[:60])  # half a packet: no frame, no samples yet
    assert [values(r) for r in readings] == [(97, 72, Quality.NONE)]
    assert frames == ["spo2", "spo2"]
    assert [w.pleth for w in waves] == [
        tuple((25 * k + j) % 256 for j in range(25)) for k in range(3)
    ]
    assert [s.connected for s in status] == [True]


@st.composite
def timed_stream(draw: st.DrawFn) -> tuple[str, list[bytes], list[float]]:
    """Packets one per read at 3 a second with a gap now and then, values and flags changing
    now and then, and now and then a read of noise or a broken packet."""
    kind = draw(st.sampled_from(["df7", "df2"]))
    n = draw(st.integers(1, 80))
    reads: list[bytes] = []
    spo2, hr, status = 97, 72, 0
    for k in range(n):
        if draw(st.integers(0, 6)) == 0:
            spo2 = draw(st.sampled_from([90, 95, 97, 127, 101]))
        if draw(st.integers(0, 6)) == 0:
            hr = draw(st.sampled_from([60, 72, 130, 300, 511, 400]))
        if draw(st.integers(0, 8)) == 0:
            status = draw(st.sampled_from([0, 0x20, 0x10, 0x40, 0x08, 0x04, 0x02]))
        packet = packet_of(kind, k, spo2=spo2, hr=hr, status=status)
        roll = draw(st.integers(0, 30))
        if roll == 0:
            reads.append(draw(st.binary(min_size=1, max_size=30)))
        elif roll == 1:
            packet = packet[: draw(st.integers(1, PACKET_LEN - 1))]
        reads.append(packet)
    times, t = [], 0.0
    for _ in reads:
        times.append(round(t, 3))
        t += draw(st.sampled_from([1 / PACKETS_PER_S] * 10 + [0.0, 0.4, 1.0, 2.5]))
    return kind, reads, times


@settings(max_examples=80, deadline=None)
@given(timed_stream(), st.data())
def test_readings_do_not_depend_on_the_chunking(stream, data):
    """Cut anywhere, fed one by one or many pieces at once: as read by read (noise and
    broken packets included)."""
    kind, reads, times = stream
    check_any_chunking(lambda: new_binary(kind), reads, times, data.draw, seen, counters)


@pytest.mark.parametrize("kind", ["df7", "df2"])
@pytest.mark.parametrize("size", [1, 7, 40, PACKET_LEN, 4096, None])
def test_any_chunk_size_gives_the_same_readings_counts_and_waveform(kind, size):
    """A long stream with noise, a broken packet and bad values, all at one time and one
    packet a second: the same whatever the read size (1 byte to 4 KiB, or all at once)."""
    rng = random.Random(3)
    parts: list[bytes] = []
    for k in range(300):
        roll = rng.random()
        if roll < 0.03:
            parts.append(rng.randbytes(rng.randint(1, 60)))
        elif roll < 0.05:
            parts.append(packet_of(kind, k)[: rng.randint(1, PACKET_LEN - 1)])
        elif roll < 0.07:
            parts.append(packet_of(kind, k, spo2=120))  # impossible: rejected
        parts.append(packet_of(kind, k, spo2=90 + k // 40, status=0x20 if k % 50 == 7 else 0))
    stream = b"".join(parts)
    reference, ref = decode(new_binary(kind), [stream])
    chunks = [stream] if size is None else chunked(stream, size)
    readings, dec = decode(new_binary(kind), chunks)
    assert seen(readings) == seen(reference)
    assert pleth_of(dec) == pleth_of(ref)
    assert counters(dec) == counters(ref)
    assert ref.records == 300
    assert ref.frames_bad > 0
    assert ref.bytes_skipped > 0


@pytest.mark.parametrize("kind", ["df7", "df2"])
def test_a_live_link_never_needs_numpy(kind, monkeypatch):
    """What a live link reads (a packet or less a call) is decoded without numpy, hunting
    included; numpy is for long buffers (replay's blocks, 4 KiB reads)."""
    rng = random.Random(5)
    parts = []
    for k in range(40):
        if k % 9 == 4:
            parts.append(rng.randbytes(20))
        parts.append(
            packet_of(kind, k, hr=60 + k // 5, status=[0x04] * 12 + [0] * 13 if k % 7 else 0)
        )
    stream = b"".join(parts)
    expected, ref = decode(new_binary(kind), [stream])  # numpy: all at once
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` now fails
    for chunks in (parts, bytewise(stream), random_chunks(stream, 1), chunked(stream, PACKET_LEN)):
        assert all(len(c) + MAX_PENDING < BULK_BYTES for c in chunks)
        readings, dec = decode(new_binary(kind), chunks)
        assert [values(r) for r in readings] == [values(r) for r in expected]
        assert pleth_of(dec) == pleth_of(ref)
        assert counters(dec) == counters(ref)


# --- ASCII (devices.md §3.1) -------------------------------------------------------------

ASCII_LINES = [
    b"SPO2=097 HR=072\r\n",
    b"SPO2=--- HR=---\r\n",
    b"14:03:22 SPO2=095 HR=101*\r\n",
    b"SPO2=098 HR=064 F\r\n",
    b"SPO2=096 HR=130 B\r\n",
    b"SPO2=--- HR=058\r\n",
]
ASCII_EXPECTED = [
    (97, 72, Quality.NONE),
    (None, None, Quality.NONE),
    (95, 101, Quality.NONE),
    (98, 64, Quality.NONE),
    (96, 130, Quality.NONE),
    (None, 58, Quality.NONE),
]
ASCII_STREAM = b"".join(ASCII_LINES)


@pytest.mark.parametrize("chunks", splits(ASCII_STREAM), ids=["whole", "bytes", "r0", "r1", "r2"])
def test_ascii_vectors_decode(chunks):
    readings, dec = decode(NoninAsciiDecoder(device="ox"), chunks)
    assert [numbers(r) for r in readings] == ASCII_EXPECTED
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (6, 0, 0)
    assert all(r.pi is None for r in readings)


def test_ascii_power_up_header_and_lf_only_lines():
    header = b"Nonin 8600V\r\nFORMAT 2\r\n10:41:02 05/06/24\r\n"
    stream = header + ASCII_STREAM.replace(b"\r\n", b"\n")
    readings, dec = decode(NoninAsciiDecoder(device="ox"), [stream])
    assert [numbers(r) for r in readings] == ASCII_EXPECTED
    assert dec.bytes_skipped == len(header) - 3  # CR and LF each end a line: counted once
    assert dec.frames_bad == 0


def test_ascii_garbage_before_between_and_after():
    junk = bytes([0xFF, 0x13, 0x7E, 0x80, 0x11])
    stream = junk + ASCII_LINES[0] + junk + ASCII_LINES[2] + junk
    readings, dec = decode(NoninAsciiDecoder(device="ox"), [stream])
    assert [numbers(r) for r in readings] == [ASCII_EXPECTED[0], ASCII_EXPECTED[2]]
    assert dec.bytes_skipped == 2 * len(junk)


@pytest.mark.parametrize(
    "line",
    [b"SPO2=101 HR=072\r\n", b"SPO2=097 HR=400\r\n", b"SPO2=0x7 HR=072\r\n", b"SPO2=097\r\n"],
)
def test_ascii_impossible_or_broken_values_reject_the_line(line):
    readings, dec = decode(NoninAsciiDecoder(device="ox"), [line + ASCII_LINES[0]])
    assert [numbers(r) for r in readings] == [ASCII_EXPECTED[0]]
    assert (dec.records, dec.frames_bad) == (1, 1)


def test_ascii_endless_noise_without_a_line_end_is_bounded():
    dec = NoninAsciiDecoder(device="ox")
    for i in range(10):
        dec.feed(b"x" * 200, float(i))
    assert len(dec._pending) <= MAX_LINE
    assert dec.bytes_skipped >= 2000 - MAX_LINE
    assert [numbers(r) for r in dec.feed(b"\r\n" + ASCII_LINES[0], 11.0)] == [ASCII_EXPECTED[0]]


# --- properties --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [NoninDf7Decoder, NoninDf2Decoder, NoninAsciiDecoder])
@given(data=st.binary(max_size=2000), chunk=st.integers(min_value=1, max_value=300))
def test_arbitrary_bytes_never_raise(cls, data, chunk):
    dec = cls(device="ox")
    for i in range(0, len(data), chunk):
        records = dec.records
        for r in dec.feed(data[i : i + chunk], 0.0):
            assert r.spo2 is None or 0 <= r.spo2 <= 100
            assert r.pr is None or 0 <= r.pr <= 321
        packets = dec.records - records
        if isinstance(dec, SendsWaveform):
            assert len(dec.waveform()) == 25 * packets
    assert len(dec._pending) <= max(MAX_PENDING, MAX_LINE)


packets = st.builds(
    df7_packet,
    hr=st.integers(0, 321) | st.just(511),
    spo2=st.integers(0, 100) | st.just(127),
    status=st.lists(st.integers(0, 0x7E).map(lambda s: s & ~1), min_size=25, max_size=25),
    pleth=st.lists(st.integers(0, 0xFFFF), min_size=25, max_size=25),
)


@given(
    garbage=st.binary(max_size=600),
    series=st.lists(packets, min_size=1, max_size=6),
    chunk=st.integers(min_value=1, max_value=300),
)
def test_df7_valid_stream_after_garbage_decodes_completely(garbage, series, chunk):
    """Whatever came before, every packet of a valid stream that follows is decoded."""
    alone, ref = decode(NoninDf7Decoder(device="ox"), [b"".join(series)])
    assert ref.records == len(series)
    expected = [values(r) for r in alone]
    stream = garbage + b"".join(series)
    out, dec = decode(NoninDf7Decoder(device="ox"), chunked(stream, chunk))
    assert [values(r) for r in out[-len(expected) :]] == expected
    assert pleth_of(dec)[-25 * len(series) :] == pleth_of(ref)


@given(garbage=st.binary(max_size=400), chunk=st.integers(min_value=1, max_value=200))
def test_df2_valid_stream_after_garbage_decodes_completely(garbage, chunk):
    stream = garbage + PUFFERFISH * 3
    out, dec = decode(NoninDf2Decoder(device="ox"), chunked(stream, chunk))
    assert values(out[-1]) == PUFFERFISH_VALUES
    assert dec.records >= 3
    assert pleth_of(dec)[-75:] == list(PUFFERFISH_PLETH * 3)


DF2_SERIES = [
    PUFFERFISH,
    CAPTURED_DF2[20:145],
    PUFFERFISH.replace(bytes.fromhex("01800148CA"), bytes.fromhex("01A40148EE"), 1),
]


def pieces_of(series: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Whole packets, packets cut short, and noise, in any order."""
    cut = st.builds(lambda p, k: p[:k], st.sampled_from(series), st.integers(0, PACKET_LEN))
    return st.lists(st.sampled_from(series) | cut | st.binary(max_size=40), max_size=12)


@pytest.mark.parametrize(
    ("cls", "series"), [(NoninDf7Decoder, DF7_SERIES), (NoninDf2Decoder, DF2_SERIES)]
)
@given(data=st.data(), seed=st.integers(0, 2**32), biggest=st.sampled_from([3, 150, 400]))
def test_chunking_never_changes_readings_or_counts(cls, series, data, seed, biggest):
    """Same bytes, any split: the same readings and the same counters, on any mix of noise."""
    stream = b"".join(data.draw(pieces_of(series)))
    whole_r, whole = decode(cls(device="ox"), [stream])
    split_r, split = decode(cls(device="ox"), random_chunks(stream, seed, biggest))
    assert [values(r) for r in split_r] == [values(r) for r in whole_r]
    assert pleth_of(split) == pleth_of(whole)
    assert counters(split) == counters(whole)
    assert split._pending == whole._pending
    consumed = len(stream) - len(whole._pending)
    assert whole.bytes_skipped <= consumed
    assert (consumed - whole.bytes_skipped) % PACKET_LEN == 0


any_packets = st.builds(
    df7_packet,
    hr=st.integers(0, 511),
    spo2=st.integers(0, 255),
    status=st.lists(st.integers(0, 0x7E).map(lambda s: s & ~1), min_size=25, max_size=25),
    pleth=st.lists(st.integers(0, 0xFFFF), min_size=25, max_size=25),
)


@given(st.lists(any_packets, min_size=1, max_size=8))
def test_every_path_decodes_any_status_and_value_alike(series):
    """The bytes path (one packet), the in-step array path and the search agree on all bits."""
    stream = b"".join(series)
    whole_r, whole = decode(NoninDf7Decoder(device="ox"), [stream])  # the search
    for chunks in (bytewise(stream), [stream[:PACKET_LEN], stream[PACKET_LEN:]], series):
        split_r, split = decode(NoninDf7Decoder(device="ox"), chunks)
        assert [values(r) for r in split_r] == [values(r) for r in whole_r]
        assert pleth_of(split) == pleth_of(whole)
        assert counters(split) == counters(whole)
    assert whole.records + whole.frames_bad == len(series)


@given(st.lists(st.sampled_from(ASCII_LINES) | st.binary(max_size=30), max_size=12))
def test_ascii_valid_line_after_garbage_and_a_line_end_decodes(pieces):
    stream = b"".join(pieces) + b"\r\n" + ASCII_STREAM
    readings, _ = decode(NoninAsciiDecoder(device="ox"), random_chunks(stream, 1))
    assert [numbers(r) for r in readings[-len(ASCII_LINES) :]] == ASCII_EXPECTED


_STATUSES = st.sampled_from(
    [0, 0x20, 0x10, 0x40, 0x08, [0x04] * 12 + [0] * 13, [0x02] * 12 + [0] * 13, [0x06] * 25]
)
_DF7_PACKETS = st.builds(
    df7_packet,
    hr=st.sampled_from([72, 130, 0, 321, 322, 511, 400]),
    spo2=st.sampled_from([97, 100, 101, 127, 0]),
    status=_STATUSES,
)


@given(st.lists(_DF7_PACKETS, min_size=64, max_size=160))
def test_df7_many_packets_at_once_are_the_packets_one_by_one(packets):
    """A long run (a capture block: decoded by numpy, the perfusion carried across packets)
    gives exactly what the packets give one by one (a live link)."""
    stream = b"".join(packets)
    whole, dec = decode(NoninDf7Decoder(device="ox"), [stream])
    one_by_one, dec1 = decode(NoninDf7Decoder(device="ox"), packets)
    assert [values(r) for r in whole] == [values(r) for r in one_by_one]
    assert pleth_of(dec) == pleth_of(dec1)
    assert counters(dec) == counters(dec1)
    # One a second: a Reading per valid packet, whichever path decodes it.
    timed, dec2 = one_a_second(NoninDf7Decoder(device="ox"), packets)
    assert len(timed) == dec2.records
