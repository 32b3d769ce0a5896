"""contec-v7 and contec-legacy: captured and synthetic packets of reference/devices.md §1 and §7.

A Contec repeats its numerics 60 times a second: it gives a Reading when a value or flag
changes and at least once a second otherwise (DESIGN §6), and its pleth is a waveform
(`waveform()`), not readings.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.devices.contec import (
    LEGACY_MAX_FRAME,
    V7_MAX_FRAME,
    ContecLegacyDecoder,
    ContecV7Decoder,
)
from sessiond.devices.decoder import EMIT_EVERY_S, Decoder, SendsWaveform, SerialSettings
from sessiond.model import Quality, Reading
from tests.repeating import check_any_chunking

Values = tuple[int | None, int | None, float | None, Quality]


def values(readings: list[Reading]) -> list[Values]:
    """What the Readings say, in order (the pleth is the waveform, not in them)."""
    return [(r.spo2, r.pr, r.pi, r.flags) for r in readings]


def chunked(stream: bytes, seed: int, largest: int = 40) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(stream):
        n = rng.randint(1, largest)
        chunks.append(stream[i : i + n])
        i += n
    return chunks


# --------------------------------------------------------------------------------------------
# V7.0
# --------------------------------------------------------------------------------------------


def v7_packet(
    *,
    spo2: int = 97,
    pr: int = 65,
    pleth: int = 51,
    pi: int = 0xFFFF,
    pi_invalid: bool = True,
    finger_out: bool = False,
    searching: bool = False,
    search_too_long: bool = False,
    signal: int = 5,
    bar: int = 6,
) -> bytes:
    """A live 0x01 packet as the device sends it: data bytes with their bit 7 in the high byte."""
    d0 = signal | search_too_long << 4 | finger_out << 7
    d1 = pleth | searching << 7
    d2 = bar | pi_invalid << 4
    data = [d0, d1, d2, pr, spo2, pi & 0xFF, pi >> 8]
    hb = 0x80
    for k, b in enumerate(data):
        hb |= (b >> 7) << k
    return bytes([0x01, hb, *(b | 0x80 for b in data)])


# headrotor/contec_data stream_data.py, the replies to A1 (devices.md §1.2).
HEADROTOR = [
    bytes.fromhex("01 E0 85 B3 96 C1 E1 FF FF"),
    bytes.fromhex("01 E0 85 B0 96 C1 E1 FF FF"),
    bytes.fromhex("01 E0 85 AE 95 C1 E1 FF FF"),
    bytes.fromhex("01 E0 85 AA 95 C1 E1 FF FF"),
]
# MarkMLl consoleapp.pas, CMS50D+ firmware 4.6, "Nominal operation".
MARKMLL = bytes.fromhex("01 e0 85 d5 9a bd e3 ff ff")
# Synthetic (devices.md §7): the first headrotor packet with the finger-out bit.
FINGER_OUT = bytes.fromhex("01 E1 85 B3 96 C1 E1 FF FF")

GOLDEN_V7 = [*HEADROTOR, MARKMLL, FINGER_OUT]
OFF = Quality.SENSOR_OFF
#: The golden packets at one time: a Reading per change (the 4 headrotor packets agree).
EXPECTED_V7: list[Values] = [
    (97, 65, None, Quality.NONE),
    (99, 61, None, Quality.NONE),
    (None, None, None, OFF),
]
EXPECTED_V7_PLETH = [51, 48, 46, 42, 85, 51]

# The other replies of headrotor's trace (devices.md §1.2 table): framed by their OSCAR lengths.
OTHER_REPLIES = [
    bytes.fromhex("0C 80"),  # A2 / A7 stop
    bytes.fromhex("06 80 80 87"),  # A0 protocol version
    bytes.fromhex("11 80 81 81 80 80 80 80 80"),  # B0 oximeter info
    bytes.fromhex("0E 80 81"),  # AC PI supported?
    bytes.fromhex("02 80 80 A0 A0 A0 A0 A0 A0 02 81 FF A0 A0 A0 A0 A0 A0"),  # A8 model, 2 parts
    bytes.fromhex("03 80 A0 A0 A0 A0 A0 A0 A0"),  # A9 vendor
    bytes.fromhex("04 80 F5 F3 E5 F2 A0 A0 A0"),  # AA device id
]


def decode_v7(chunks: list[bytes], t: float = 0.0) -> tuple[list[Reading], ContecV7Decoder]:
    """The chunks fed at one time `t` (so only changes give Readings); `dec.pleth` collects
    the waveform."""
    dec = ContecV7Decoder(device="spo2")
    out: list[Reading] = []
    dec.pleth = []  # type: ignore[attr-defined]
    for chunk in chunks:
        out += dec.feed(chunk, t)
        dec.pleth += dec.waveform()  # type: ignore[attr-defined]
    return out, dec


def test_v7_encoder_reproduces_the_captured_packets():
    """The test encoder is the inverse of the restore rule on the captured bytes."""
    assert v7_packet(pleth=51, bar=6) == HEADROTOR[0]
    assert v7_packet(pleth=42, bar=5) == HEADROTOR[3]
    assert v7_packet(spo2=99, pr=61, pleth=85, bar=10) == MARKMLL
    assert v7_packet(finger_out=True) == FINGER_OUT


def test_v7_golden_packets_decode_all_at_once():
    """Captured and synthetic packets: a Reading per change; every packet's pleth sample in
    the waveform."""
    readings, dec = decode_v7([b"".join(GOLDEN_V7)])
    assert values(readings) == EXPECTED_V7
    assert list(dec.waveform()) == EXPECTED_V7_PLETH
    assert (dec.records, dec.frames_bad, dec.bytes_skipped, dec.frames_other) == (6, 0, 0, 0)
    assert {r.device for r in readings} == {"spo2"}
    assert all(r.t == 0.0 for r in readings)


def test_v7_golden_packets_decode_byte_by_byte():
    stream = b"".join(GOLDEN_V7)
    readings, dec = decode_v7([stream[i : i + 1] for i in range(len(stream))])
    assert values(readings) == EXPECTED_V7
    assert dec.pleth == EXPECTED_V7_PLETH  # type: ignore[attr-defined]
    assert (dec.frames_bad, dec.bytes_skipped) == (0, 0)


@pytest.mark.parametrize("seed", range(8))
def test_v7_golden_packets_decode_in_random_chunks(seed):
    readings, dec = decode_v7(chunked(b"".join(GOLDEN_V7) * 3, seed))
    assert values(readings) == EXPECTED_V7 * 3
    assert dec.pleth == EXPECTED_V7_PLETH * 3  # type: ignore[attr-defined]
    assert dec.records == 18


def test_v7_reading_time_is_the_arrival_of_the_packet_end():
    dec = ContecV7Decoder(device="spo2")
    assert dec.feed(MARKMLL[:4], 10.0) == []
    (r,) = dec.feed(MARKMLL[4:] + HEADROTOR[0][:3], 10.5)
    assert (r.t, r.spo2, r.pr) == (10.5, 99, 61)
    (r,) = dec.feed(HEADROTOR[0][3:], 11.0)
    assert (r.t, r.spo2, r.pr) == (11.0, 97, 65)


def test_v7_a_change_of_value_or_flag_gives_a_reading():
    stream = (
        v7_packet(pleth=1)
        + v7_packet(pleth=2, bar=9, signal=2)  # bar graph and signal are not kept: no change
        + v7_packet(pleth=3, pr=66)
        + v7_packet(pleth=4, pr=66, searching=True)
        + v7_packet(pleth=5)  # back to the first values: a new Reading, in order
    )
    readings, dec = decode_v7([stream])
    assert [(r.pr, r.flags) for r in readings] == [
        (65, Quality.NONE),
        (66, Quality.NONE),
        (66, Quality.SEARCHING),
        (65, Quality.NONE),
    ]
    assert dec.waveform() == (1, 2, 3, 4, 5)


def test_v7_high_bits_are_restored():
    """PR above 127 and SpO2 100 need their bit 7 from the high byte (the classic decoder bug)."""
    packet = v7_packet(pr=130, spo2=100)
    assert packet[1] & 0x08  # PR's bit 7 travels in the high byte
    (r,), _ = decode_v7([packet])
    assert (r.spo2, r.pr) == (100, 130)
    (r,), _ = decode_v7([v7_packet(pr=254, spo2=0)])
    assert (r.spo2, r.pr) == (0, 254)


@pytest.mark.parametrize(
    ("spo2", "pr", "expected"),
    [(127, 255, (None, None)), (101, 200, (None, 200)), (98, 255, (98, None))],
)
def test_v7_out_of_range_values_are_no_value(spo2, pr, expected):
    """SpO2 > 100 (127 usual) and PR > 254 are the device's 'no value', not bad frames."""
    (r,), dec = decode_v7([v7_packet(spo2=spo2, pr=pr)])
    assert (r.spo2, r.pr) == expected
    assert r.flags == Quality.NONE
    assert dec.frames_bad == 0


def test_v7_finger_out_withholds_the_numbers_and_keeps_the_pleth():
    (r,), dec = decode_v7([v7_packet(finger_out=True, spo2=98, pr=70, pi_invalid=False, pi=300)])
    assert (r.spo2, r.pr, r.pi, r.flags) == (None, None, None, Quality.SENSOR_OFF)
    assert dec.waveform() == (51,)


def test_v7_finger_out_packets_with_other_numbers_are_no_change():
    """Finger out withholds the numbers: packets that differ only in them say the same."""
    stream = v7_packet(finger_out=True, pr=70) + v7_packet(finger_out=True, pr=90, spo2=50)
    (r,), dec = decode_v7([stream])
    assert r.flags == Quality.SENSOR_OFF
    assert dec.records == 2


@pytest.mark.parametrize(
    "packet",
    [v7_packet(searching=True), v7_packet(search_too_long=True)],
    ids=["searching", "search-too-long"],
)
def test_v7_searching_keeps_its_numbers_with_the_flag(packet):
    """Like Masimo: a flag that does not mean 'no patient' travels with the number."""
    (r,), _ = decode_v7([packet])
    assert (r.spo2, r.pr, r.flags) == (97, 65, Quality.SEARCHING)


@pytest.mark.parametrize(
    ("kwargs", "pi"),
    [
        ({"pi_invalid": True, "pi": 590}, None),  # the PI-invalid bit wins over a value
        ({"pi_invalid": False, "pi": 0xFFFF}, None),  # FF FF = PI not supported
        ({"pi_invalid": False, "pi": 590}, 5.9),  # 0x024E, hundredths of a percent [I]
        ({"pi_invalid": False, "pi": 0x8080}, None),  # beyond 100 %: not a PI
        ({"pi_invalid": False, "pi": 2}, 0.02),
    ],
)
def test_v7_perfusion_index(kwargs, pi):
    (r,), _ = decode_v7([v7_packet(**kwargs)])
    assert r.pi == pi


def test_v7_other_replies_are_skipped_by_their_length_without_counting_them_bad():
    stream = HEADROTOR[0] + b"".join(OTHER_REPLIES) + HEADROTOR[1]
    readings, dec = decode_v7([stream])
    assert values(readings) == EXPECTED_V7[:1]
    assert (dec.records, dec.frames_bad, dec.bytes_skipped, dec.frames_other) == (2, 0, 0, 8)
    readings, dec = decode_v7([stream[i : i + 1] for i in range(len(stream))])
    assert values(readings) == EXPECTED_V7[:1]
    assert dec.pleth == EXPECTED_V7_PLETH[:2]  # type: ignore[attr-defined]
    assert (dec.frames_bad, dec.bytes_skipped, dec.frames_other) == (0, 0, 8)


def test_v7_a_packet_with_lost_bytes_is_bad_and_the_next_one_decodes():
    stream = HEADROTOR[0] + MARKMLL[:5] + HEADROTOR[1]
    readings, dec = decode_v7([stream])
    assert values(readings) == EXPECTED_V7[:1]
    assert dec.waveform() == (51, 48)
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (2, 1, 5)


def test_v7_garbage_before_between_and_after_resynchronises_and_counts():
    junk = bytes([0xFF, 0x80, 0x7F, 0xE1, 0x55])  # continuation bytes and unknown types
    stream = junk + HEADROTOR[0] + junk + MARKMLL + junk
    readings, dec = decode_v7([stream])
    assert values(readings) == EXPECTED_V7[:2]
    assert dec.waveform() == (51, 85)
    assert dec.bytes_skipped == 3 * len(junk)
    assert dec.frames_bad == 0


def test_v7_connecting_mid_packet_skips_the_tail():
    stream = MARKMLL[4:] + HEADROTOR[0]
    readings, dec = decode_v7([stream])
    assert values(readings) == EXPECTED_V7[:1]
    assert dec.bytes_skipped == 5


def test_v7_unparsed_bytes_are_bounded():
    """Only a partial packet is kept between calls: never more than a frame."""
    dec = ContecV7Decoder(device="spo2")
    rng = random.Random(7)
    for i in range(200):
        dec.feed(rng.randbytes(rng.randint(0, 50)), float(i))
        assert len(dec._pending) < V7_MAX_FRAME
    dec.feed(b"\x01" + b"\xff" * 7, 200.0)
    assert len(dec._pending) == 8
    dec.feed(b"\xff" + HEADROTOR[0], 201.0)
    assert dec.waveform()[-1] == 51


def test_v7_commands():
    assert ContecV7Decoder.start_command() == bytes.fromhex("7D 81 A1 80 80 80 80 80 80")
    assert ContecV7Decoder.keepalive_command() == ContecV7Decoder.start_command()
    assert ContecV7Decoder.stop_command() == bytes.fromhex("7D 81 A2 80 80 80 80 80 80")
    assert 0 < ContecV7Decoder.KEEPALIVE_INTERVAL_S <= 10  # well inside the ~30 s lifetime


def test_class_attributes_and_the_decoder_protocol():
    assert ContecV7Decoder.protocol == "contec-v7"
    assert ContecV7Decoder.serial == SerialSettings(baudrate=115200)
    assert ContecV7Decoder.streaming
    assert ContecV7Decoder.silence_timeout_s == 0.5
    assert ContecLegacyDecoder.protocol == "contec-legacy"
    assert ContecLegacyDecoder.serial == SerialSettings(baudrate=19200, parity="O")
    assert ContecLegacyDecoder.streaming
    # What the lead's registry holds: both must satisfy the Decoder protocol (checked by mypy).
    registry: dict[str, type[Decoder]] = {
        ContecV7Decoder.protocol: ContecV7Decoder,
        ContecLegacyDecoder.protocol: ContecLegacyDecoder,
    }
    dec = registry["contec-v7"](device="ox")
    assert (dec.device, dec.records, dec.frames_bad, dec.bytes_skipped) == ("ox", 0, 0, 0)


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_v7_arbitrary_bytes_never_raise(data, chunk):
    dec = ContecV7Decoder(device="spo2")
    out: list[Reading] = []
    for i in range(0, len(data), chunk):
        out += dec.feed(data[i : i + chunk], 0.0)
    for r in out:
        assert r.spo2 is None or 0 <= r.spo2 <= 100
        assert r.pr is None or 0 <= r.pr <= 254
        assert r.pi is None or 0.0 <= r.pi <= 100.0
    assert len(out) <= dec.records
    assert dec.bytes_skipped + 9 * dec.records + len(dec._pending) <= len(data)
    assert len(dec._pending) < V7_MAX_FRAME


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_v7_valid_stream_after_garbage_decodes_completely(garbage, chunk):
    """Whatever came before, every packet of a good stream that follows is decoded."""
    stream = garbage + b"".join(GOLDEN_V7)
    readings, dec = decode_v7([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    assert values(readings)[-2:] == EXPECTED_V7[1:]
    assert dec.pleth[-6:] == EXPECTED_V7_PLETH  # type: ignore[attr-defined]


_v7_packets = st.builds(
    v7_packet,
    spo2=st.integers(0, 127),
    pr=st.integers(0, 255),
    pleth=st.integers(0, 127),
    pi=st.integers(0, 0xFFFF),
    pi_invalid=st.booleans(),
    finger_out=st.booleans(),
    searching=st.booleans(),
    search_too_long=st.booleans(),
    signal=st.integers(0, 15),
    bar=st.integers(0, 15),
)


@given(st.lists(_v7_packets, max_size=40), st.integers(min_value=1, max_value=100))
def test_v7_chunking_never_changes_the_samples(packets, chunk):
    """Whole or in pieces at one time, the same packets give the same Readings and waveform."""
    stream = b"".join(packets)
    whole, dec = decode_v7([stream])
    pieces, dec2 = decode_v7([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    assert values(pieces) == values(whole)
    assert dec2.pleth == list(dec.waveform())  # type: ignore[attr-defined]
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (len(packets), 0, 0)


# --------------------------------------------------------------------------------------------
# Legacy
# --------------------------------------------------------------------------------------------


def legacy_packet(
    *,
    spo2: int = 97,
    pr: int = 72,
    pleth: int = 64,
    finger_out: bool = False,
    searching: bool = False,
    probe_error: bool = False,
    beep: bool = False,
    signal: int = 5,
    bar: int = 7,
) -> bytes:
    b0 = 0x80 | beep << 6 | finger_out << 4 | signal
    b2 = (pr >> 7) << 6 | searching << 5 | probe_error << 4 | bar
    return bytes([b0, pleth, b2, pr & 0x7F, spo2])


# Synthetic vectors of devices.md §1.1.
GOLDEN_LEGACY = [
    bytes.fromhex("C5 40 07 48 61"),  # signal 5, beep, pleth 64, bar 7, PR 72, SpO2 97
    bytes.fromhex("85 33 45 02 60"),  # PR 130: its bit 7 is bit 6 of byte 2
    bytes.fromhex("95 40 00 7F 7F"),  # finger out, 127s as values
]
EXPECTED_LEGACY: list[Values] = [
    (97, 72, None, Quality.NONE),
    (96, 130, None, Quality.NONE),
    (None, None, None, OFF),
]
EXPECTED_LEGACY_PLETH = [64, 0x33, 64]


def decode_legacy(chunks: list[bytes], t: float = 0.0) -> tuple[list[Reading], ContecLegacyDecoder]:
    dec = ContecLegacyDecoder(device="spo2")
    out: list[Reading] = []
    dec.pleth = []  # type: ignore[attr-defined]
    for chunk in chunks:
        out += dec.feed(chunk, t)
        dec.pleth += dec.waveform()  # type: ignore[attr-defined]
    return out, dec


def test_legacy_encoder_reproduces_the_vectors():
    assert legacy_packet(beep=True) == GOLDEN_LEGACY[0]
    assert legacy_packet(spo2=96, pr=130, pleth=0x33, bar=5, signal=5) == GOLDEN_LEGACY[1]
    assert legacy_packet(finger_out=True, spo2=127, pr=127, bar=0) == GOLDEN_LEGACY[2]


def test_legacy_vectors_decode_all_at_once():
    readings, dec = decode_legacy([b"".join(GOLDEN_LEGACY)])
    assert values(readings) == EXPECTED_LEGACY
    assert list(dec.waveform()) == EXPECTED_LEGACY_PLETH
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (3, 0, 0)


def test_legacy_vectors_decode_byte_by_byte():
    stream = b"".join(GOLDEN_LEGACY)
    readings, dec = decode_legacy([stream[i : i + 1] for i in range(len(stream))])
    assert values(readings) == EXPECTED_LEGACY
    assert dec.pleth == EXPECTED_LEGACY_PLETH  # type: ignore[attr-defined]
    assert (dec.frames_bad, dec.bytes_skipped) == (0, 0)


@pytest.mark.parametrize("seed", range(8))
def test_legacy_vectors_decode_in_random_chunks(seed):
    readings, dec = decode_legacy(chunked(b"".join(GOLDEN_LEGACY) * 4, seed, largest=12))
    assert values(readings) == EXPECTED_LEGACY * 4
    assert dec.pleth == EXPECTED_LEGACY_PLETH * 4  # type: ignore[attr-defined]


def test_legacy_equal_packets_give_one_reading():
    stream = b"".join(legacy_packet(pleth=p, bar=p % 16, beep=p == 3) for p in range(5))
    (r,), dec = decode_legacy([stream])
    assert (r.spo2, r.pr) == (97, 72)
    assert dec.waveform() == (0, 1, 2, 3, 4)
    assert dec.records == 5


def test_legacy_flags():
    stream = (
        legacy_packet(searching=True)
        + legacy_packet(probe_error=True)
        + legacy_packet(finger_out=True, probe_error=True)
        + legacy_packet(spo2=127, pr=255)
    )
    readings, _ = decode_legacy([stream])
    assert [(r.spo2, r.pr, r.flags) for r in readings] == [
        (97, 72, Quality.SEARCHING),
        (None, None, Quality.NO_SENSOR),
        (None, None, Quality.SENSOR_OFF | Quality.NO_SENSOR),
        (None, None, Quality.NONE),
    ]


def test_legacy_sync_is_bit_7_of_byte_0_only():
    """Data bytes with bit 7 clear before the first sync are skipped; a sync inside breaks one."""
    stream = b"\x40\x07\x48\x61" + GOLDEN_LEGACY[0][:3] + GOLDEN_LEGACY[1] + b"\x00\x7f"
    readings, dec = decode_legacy([stream])
    assert values(readings) == [EXPECTED_LEGACY[1]]
    assert (dec.frames_bad, dec.bytes_skipped) == (1, 4 + 3 + 2)


def test_legacy_unparsed_bytes_are_bounded():
    dec = ContecLegacyDecoder(device="spo2")
    rng = random.Random(3)
    for i in range(200):
        dec.feed(rng.randbytes(rng.randint(0, 30)), float(i))
        assert len(dec._pending) < LEGACY_MAX_FRAME


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_legacy_arbitrary_bytes_never_raise(data, chunk):
    dec = ContecLegacyDecoder(device="spo2")
    out: list[Reading] = []
    for i in range(0, len(data), chunk):
        out += dec.feed(data[i : i + chunk], 0.0)
    for r in out:
        assert r.spo2 is None or 0 <= r.spo2 <= 100
        assert r.pr is None or 0 <= r.pr <= 254
        assert r.pi is None
    # Every byte is in a packet, skipped, or kept for the next call.
    assert dec.bytes_skipped + 5 * dec.records + len(dec._pending) == len(data)


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_legacy_valid_stream_after_garbage_decodes_completely(garbage, chunk):
    stream = garbage + b"".join(GOLDEN_LEGACY)
    readings, dec = decode_legacy([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    assert values(readings)[-2:] == EXPECTED_LEGACY[1:]
    assert dec.pleth[-3:] == EXPECTED_LEGACY_PLETH  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Readings on change and once a second; the same whatever the chunking (DESIGN §6)
# --------------------------------------------------------------------------------------------

RATE_HZ = 60


def packets_of(kind: str, spec: list[tuple[int, bool]]) -> list[bytes]:
    """One packet per (pr, finger_out), pleth counting up."""
    make = v7_packet if kind == "v7" else legacy_packet
    return [make(pr=pr, finger_out=off, pleth=k % 128) for k, (pr, off) in enumerate(spec)]


def new_decoder(kind: str) -> ContecV7Decoder | ContecLegacyDecoder:
    return ContecV7Decoder(device="ox") if kind == "v7" else ContecLegacyDecoder(device="ox")


def seen(readings: list[Reading]) -> list[tuple[float, int | None, Quality]]:
    return [(r.t, r.pr, r.flags) for r in readings]


@pytest.mark.parametrize("kind", ["v7", "legacy"])
def test_a_steady_stream_gives_a_reading_once_a_second_and_each_change_at_once(kind):
    """3 s at 60 packets a second, one packet per read; PR 80 from 1.5 s."""
    spec = [(72 if k < 90 else 80, False) for k in range(3 * RATE_HZ)]
    dec = new_decoder(kind)
    out: list[Reading] = []
    pleth: list[int] = []
    for k, packet in enumerate(packets_of(kind, spec)):
        out += dec.feed(packet, k / RATE_HZ)
        pleth += dec.waveform()
    assert [(round(t, 3), pr) for t, pr, _ in seen(out)] == [
        (0.0, 72), (1.0, 72), (1.5, 80), (2.5, 80),
    ]  # fmt: skip
    assert dec.records == len(pleth) == 3 * RATE_HZ  # every packet counts, and is in the pleth
    assert pleth == [k % 128 for k in range(3 * RATE_HZ)]
    assert EMIT_EVERY_S == 1.0


@st.composite
def timed_stream(draw: st.DrawFn) -> tuple[str, list[bytes], list[float]]:
    """Packets one per read at 60 Hz with a gap now and then, values changing now and then."""
    kind = draw(st.sampled_from(["v7", "legacy"]))
    n = draw(st.integers(1, 400))
    spec, pr, off = [], 72, False
    for _ in range(n):
        if draw(st.integers(0, 40)) == 0:
            pr = draw(st.integers(40, 140))
        if draw(st.integers(0, 80)) == 0:
            off = not off
        spec.append((pr, off))
    times, t = [], 0.0
    for _ in range(n):
        times.append(round(t, 3))
        t += draw(st.sampled_from([1 / RATE_HZ] * 20 + [0.0, 0.4, 1.0, 2.5]))
    return kind, packets_of(kind, spec), times


@settings(max_examples=60, deadline=None)
@given(timed_stream(), st.data())
def test_readings_do_not_depend_on_the_chunking(stream, data):
    """Cut anywhere, fed one by one or many pieces at once: as packet by packet."""
    kind, packets, times = stream
    check_any_chunking(lambda: new_decoder(kind), packets, times, data.draw, seen,
                       lambda d: (d.records, d.frames_bad, d.bytes_skipped))  # fmt: skip


def test_the_contec_decoders_send_a_waveform():
    assert isinstance(ContecV7Decoder(device="ox"), SendsWaveform)
    assert isinstance(ContecLegacyDecoder(device="ox"), SendsWaveform)


@pytest.mark.parametrize("kind", ["v7", "legacy"])
def test_bulk_framing_of_a_long_buffer_is_the_same_as_short_calls(kind):
    """A buffer long enough for numpy framing (noise, other replies and runs mixed) decodes as
    the same bytes fed in short calls."""
    rng = random.Random(11)
    parts: list[bytes] = []
    for k in range(600):
        roll = rng.random()
        if roll < 0.05:
            parts.append(rng.randbytes(rng.randint(1, 12)))
        elif roll < 0.08 and kind == "v7":
            parts.append(rng.choice(OTHER_REPLIES))
        else:
            parts += packets_of(kind, [(70 + k // 50, k % 97 == 0)])
    stream = b"".join(parts)
    whole = new_decoder(kind)
    readings = whole.feed(stream, 5.0)
    small = new_decoder(kind)
    pieces: list[Reading] = []
    for i in range(0, len(stream), 17):
        pieces += small.feed(stream[i : i + 17], 5.0)
    assert seen(readings) == seen(pieces)
    counts = [(d.records, d.frames_bad, d.bytes_skipped) for d in (whole, small)]
    assert counts[0] == counts[1]
