"""suntech-advantage: documented commands, synthetic replies (reference/devices.md §4.1)."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.devices import suntech
from sessiond.devices.decoder import Decoder, SerialSettings
from sessiond.devices.suntech import (
    ERROR_CODES,
    ERROR_IMPOSSIBLE,
    MAX_FRAME,
    MAX_REPLIES,
    Ack,
    AckCode,
    BpResult,
    CuffPressure,
    Reply,
    ReturnString,
    SuntechAdvantageDecoder,
    abort_command,
    checksum,
    command,
    cuff_pressure_command,
    read_result_command,
    start_measurement_command,
)
from sessiond.model import Quality, Reading


def reply(body: bytes) -> bytes:
    """A module → host frame: `>`, LEN (the whole frame), body, checksum (test encoder)."""
    frame = bytes([0x3E, len(body) + 3]) + body
    return frame + bytes([-sum(frame) & 0xFF])


def ack(code: str) -> bytes:
    return reply(code.encode())


def cuff(mmhg: int) -> bytes:
    return reply(mmhg.to_bytes(2, "little", signed=True))


def bp_data(*, sys: int, dia: int, mean: int, pr: int, error: int = 0) -> bytes:
    """A 0x18 frame; offsets from `>`: SYS [2..3], DIA [4..5], PR [16], MAP [18..19], error [20]."""
    frame = bytearray(reply(bytes(21)))
    frame[2:4] = sys.to_bytes(2, "little", signed=True)
    frame[4:6] = dia.to_bytes(2, "little", signed=True)
    frame[6:16] = bytes(range(0x10, 0x1A))  # undecoded bytes: anything
    frame[16] = pr
    frame[18:20] = mean.to_bytes(2, "little", signed=True)
    frame[20] = error
    frame[23] = -sum(frame[:23]) & 0xFF
    return bytes(frame)


def return_string(text: str) -> bytes:
    return reply(text.encode().ljust(64, b"\0"))


ACK_O = ack("O")
ACK_K = ack("K")
ACK_E = ack("E")
RESULT = bp_data(sys=120, dia=80, mean=93, pr=72)
ARTIFACT = bp_data(sys=0, dia=0, mean=0, pr=0, error=0x02)
VERSION = return_string("LX 3.1.0")

#: A whole measurement as the link would see it: start acknowledged, cuff polled, done, result.
MEASUREMENT = [ACK_O, cuff(0), cuff(85), cuff(162), cuff(120), ACK_K, RESULT]
MEASUREMENT_REPLIES = [
    (Ack, AckCode.RECEIVED),
    (CuffPressure, 0),
    (CuffPressure, 85),
    (CuffPressure, 162),
    (CuffPressure, 120),
    (Ack, AckCode.COMPLETED),
    (BpResult, (120, 80, 93, 72, 0)),
]


def summary(r: Reply) -> tuple[type, object]:
    match r:
        case Ack():
            return (Ack, r.code)
        case CuffPressure():
            return (CuffPressure, r.mmhg)
        case BpResult():
            return (BpResult, (r.sys, r.dia, r.map, r.pr, r.error))
        case ReturnString():
            return (ReturnString, r.text)


def bp(r: Reading) -> tuple[int | None, int | None, int | None, int | None, Quality]:
    return (r.sys, r.dia, r.map, r.pr, r.flags)


def decode(chunks: list[bytes]) -> tuple[list[Reading], list[Reply], SuntechAdvantageDecoder]:
    dec = SuntechAdvantageDecoder(device="nibp")
    readings: list[Reading] = []
    replies: list[Reply] = []
    for i, chunk in enumerate(chunks):
        readings += dec.feed(chunk, float(i))
        replies += dec.take_replies()
    return readings, replies, dec


# --- commands --------------------------------------------------------------------------------


def test_documented_command_bytes():
    assert start_measurement_command() == bytes.fromhex("3A 20 A6")
    assert abort_command() == bytes.fromhex("3A 79 01 00 4C")
    assert read_result_command() == bytes.fromhex("3A 79 03 00 4A")
    assert cuff_pressure_command() == bytes.fromhex("3A 79 05 00 48")


@pytest.mark.parametrize(
    "frame",
    [
        "3A 20 A6",
        "3A 79 01 00 4C",
        "3A 79 03 00 4A",
        "3A 79 05 00 48",
        "3A 87 3F",  # start, pediatric [D]
        "3A 28 9E",  # start, neonate [D]
        "3A 0C 00 01 01 B8",  # pneumatics all closed (ak-git)
        "3A 79 10 03 3A",  # status [D]
    ],
)
def test_checksum_is_the_twos_complement_of_the_sum(frame):
    raw = bytes.fromhex(frame)
    assert checksum(raw[:-1]) == raw[-1]
    assert sum(raw) & 0xFF == 0
    assert command(raw[1:-1]) == raw


def test_class_attributes_and_the_decoder_protocol():
    assert SuntechAdvantageDecoder.protocol == "suntech-advantage"
    assert SuntechAdvantageDecoder.serial == SerialSettings(baudrate=9600)
    assert not SuntechAdvantageDecoder.streaming
    cls: type[Decoder] = SuntechAdvantageDecoder  # what the lead's registry holds (mypy checks)
    dec = cls(device="nibp")
    assert (dec.device, dec.records, dec.frames_bad, dec.bytes_skipped) == ("nibp", 0, 0, 0)


# --- replies ---------------------------------------------------------------------------------


def test_a_whole_measurement_decodes_all_at_once():
    readings, replies, dec = decode([b"".join(MEASUREMENT)])
    assert [bp(r) for r in readings] == [(120, 80, 93, 72, Quality.NONE)]
    assert [summary(r) for r in replies] == MEASUREMENT_REPLIES
    assert (readings[0].device, readings[0].t) == ("nibp", 0.0)
    assert (readings[0].spo2, readings[0].pi) == (None, None)
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (1, 0, 0)


def test_a_whole_measurement_decodes_byte_by_byte():
    stream = b"".join(MEASUREMENT)
    readings, replies, dec = decode([stream[i : i + 1] for i in range(len(stream))])
    assert [bp(r) for r in readings] == [(120, 80, 93, 72, Quality.NONE)]
    assert [summary(r) for r in replies] == MEASUREMENT_REPLIES
    assert readings[0].t == len(stream) - 1  # the arrival of the frame's last byte
    assert (dec.frames_bad, dec.bytes_skipped) == (0, 0)


@pytest.mark.parametrize("seed", range(8))
def test_a_whole_measurement_decodes_in_random_chunks(seed):
    rng = random.Random(seed)
    stream = b"".join(MEASUREMENT) * 2
    chunks, i = [], 0
    while i < len(stream):
        n = rng.randint(1, 30)
        chunks.append(stream[i : i + n])
        i += n
    readings, replies, _ = decode(chunks)
    assert [bp(r) for r in readings] == [(120, 80, 93, 72, Quality.NONE)] * 2
    assert [summary(r) for r in replies] == MEASUREMENT_REPLIES * 2


@pytest.mark.parametrize("code", list(AckCode))
def test_every_ack_code(code):
    readings, replies, _ = decode([ack(code.value)])
    assert readings == []
    assert [summary(r) for r in replies] == [(Ack, code)]


def test_ack_o_k_e_in_order_and_replies_are_drained():
    dec = SuntechAdvantageDecoder(device="nibp")
    assert dec.feed(ACK_O + ACK_K, 1.0) == []
    assert dec.feed(ACK_E, 2.0) == []
    assert dec.take_replies() == [
        Ack(t=1.0, code=AckCode.RECEIVED),
        Ack(t=1.0, code=AckCode.COMPLETED),
        Ack(t=2.0, code=AckCode.ERROR),
    ]
    assert dec.take_replies() == []


def test_cuff_pressure_is_signed_little_endian():
    _, replies, _ = decode([cuff(162) + cuff(-3) + cuff(0x0123)])
    assert [summary(r) for r in replies] == [
        (CuffPressure, 162),
        (CuffPressure, -3),
        (CuffPressure, 0x123),
    ]


def test_bp_data_with_an_error_has_no_values_and_exposes_the_code():
    """Error 0x02 (artifact): the Reading has no numbers; the BpResult says why."""
    readings, replies, dec = decode([ARTIFACT])
    assert [bp(r) for r in readings] == [(None, None, None, None, Quality.ARTIFACT)]
    (result,) = replies
    assert isinstance(result, BpResult)
    assert (result.error, result.ok, result.sys) == (0x02, False, None)
    assert result.error_text == ERROR_CODES[0x02]
    assert "artifact" in result.error_text
    assert (dec.records, dec.frames_bad) == (1, 0)


def test_an_error_code_wins_over_the_values_in_the_frame():
    readings, replies, _ = decode([bp_data(sys=120, dia=80, mean=93, pr=72, error=0x55)])
    assert [bp(r) for r in readings] == [(None, None, None, None, Quality.NONE)]
    (result,) = replies
    assert isinstance(result, BpResult)
    assert result.error_text == "pneumatic blockage"


@pytest.mark.parametrize(("code", "flags"), [(0x01, Quality.LOW_SIGNAL), (0x04, Quality.NONE)])
def test_error_codes_with_a_quality_meaning(code, flags):
    readings, _, _ = decode([bp_data(sys=0, dia=0, mean=0, pr=0, error=code)])
    assert readings[0].flags == flags


def test_error_code_table():
    assert set(ERROR_CODES) == {1, 2, 3, 4, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x61, 0x63}
    assert suntech.error_text(0x04) == "measurement timeout"
    assert suntech.error_text(0x85) == "unknown error 0x85"
    assert BpResult(t=0.0, sys=1, dia=1, map=1, pr=1, error=0).error_text == ""


def test_a_successful_result_without_pulse_rate():
    readings, _, _ = decode([bp_data(sys=142, dia=88, mean=106, pr=0)])
    assert [bp(r) for r in readings] == [(142, 88, 106, None, Quality.NONE)]


def test_return_string():
    readings, replies, _ = decode([VERSION])
    assert readings == []
    assert [summary(r) for r in replies] == [(ReturnString, "LX 3.1.0")]


# --- bad input -------------------------------------------------------------------------------


def test_bad_checksums_are_rejected_counted_and_skipped():
    bad = bytearray(RESULT)
    bad[4] ^= 0x01  # DIA 81 with the old checksum
    stream = bytes(bad) + ACK_K + ack("O")[:-1] + b"\x00" + ACK_O
    readings, replies, dec = decode([stream])
    assert readings == []
    assert [summary(r) for r in replies] == [(Ack, AckCode.COMPLETED), (Ack, AckCode.RECEIVED)]
    assert dec.frames_bad == 2
    assert dec.bytes_skipped == len(RESULT) + len(ACK_O)  # every byte outside a good frame


def test_checksummed_frames_with_broken_fields_are_bad():
    stream = ack("Z") + ACK_K  # no such code
    readings, replies, dec = decode([stream])
    assert readings == []
    assert [summary(r) for r in replies] == [(Ack, AckCode.COMPLETED)]
    assert (dec.frames_bad, dec.bytes_skipped, dec.records) == (1, 0, 0)


IMPOSSIBLE = [
    pytest.param(0, 80, 93, id="sys-zero"),
    pytest.param(120, 0, 93, id="dia-zero"),
    pytest.param(120, 80, 0, id="map-zero"),
    pytest.param(120, -5, 93, id="dia-negative"),
    pytest.param(-120, 80, 93, id="sys-negative"),
    pytest.param(400, 80, 93, id="sys-above-300"),
    pytest.param(301, 80, 150, id="sys-301"),
    pytest.param(80, 120, 93, id="dia-above-sys"),  # in range: must not raise bp_high
    pytest.param(120, 120, 120, id="dia-equals-sys"),
    pytest.param(120, 80, 130, id="map-above-sys"),
    pytest.param(120, 80, 70, id="map-below-dia"),
]


@pytest.mark.parametrize(("sys", "dia", "mean"), IMPOSSIBLE)
def test_a_result_that_cannot_be_a_blood_pressure_is_a_failed_measurement(sys, dia, mean):
    """Checksum-valid but impossible: a bad frame, yet the answer the link waits for and a
    reading without values (the monitor's `nibp_error`), never a reading with numbers."""
    stream = bp_data(sys=sys, dia=dia, mean=mean, pr=72) + ACK_K
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        readings, replies, dec = decode(chunks)
        assert [bp(r) for r in readings] == [(None, None, None, None, Quality.NONE)]
        result, done = replies
        assert isinstance(result, BpResult)
        assert (result.sys, result.dia, result.map, result.pr) == (None, None, None, None)
        assert (result.error, result.ok) == (ERROR_IMPOSSIBLE, False)
        assert "impossible" in result.error_text
        assert summary(done) == (Ack, AckCode.COMPLETED)
        assert (dec.frames_bad, dec.records, dec.bytes_skipped) == (1, 0, 0)


@pytest.mark.parametrize(
    ("sys", "dia", "mean"),
    [(300, 299, 299), (2, 1, 1), (2, 1, 2), (121, 80, 80), (121, 80, 121)],
)
def test_the_edges_of_a_possible_result(sys, dia, mean):
    readings, _, dec = decode([bp_data(sys=sys, dia=dia, mean=mean, pr=72)])
    assert [bp(r) for r in readings] == [(sys, dia, mean, 72, Quality.NONE)]
    assert (dec.frames_bad, dec.records) == (0, 1)


def test_garbage_before_between_and_after_resynchronises_and_counts():
    junk = b"\x00\xff>\x99>\x01:"  # `>` with lengths that name no reply
    stream = junk + ACK_O + junk + RESULT + junk
    readings, replies, dec = decode([stream])
    assert [bp(r) for r in readings] == [(120, 80, 93, 72, Quality.NONE)]
    assert [summary(r) for r in replies] == [(Ack, AckCode.RECEIVED), MEASUREMENT_REPLIES[-1]]
    assert dec.bytes_skipped == 3 * len(junk)
    assert dec.frames_bad == 0


def test_a_false_start_inside_noise_does_not_lose_or_delay_the_frames_after_it():
    """A `>` + known length in noise gives way to the first whole frame inside its length."""
    stream = b">\x18" + ACK_O + RESULT
    readings, replies, dec = decode([stream[i : i + 1] for i in range(len(stream))])
    assert [summary(r) for r in replies] == [(Ack, AckCode.RECEIVED), MEASUREMENT_REPLIES[-1]]
    # Each at the arrival of its own last byte, not when the false frame's length has passed.
    assert [r.t for r in replies] == [5.0, len(stream) - 1]
    assert len(readings) == 1
    assert (dec.frames_bad, dec.bytes_skipped) == (1, 2)


# `>` and the length of the 67-byte return string: noise, or a reply that lost its tail.
CUT = b">\x43"


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_a_cut_frame_before_a_result_does_not_hold_it_back(split):
    """The result is decoded when its last byte arrives, not many replies later."""
    stream = CUT + RESULT
    chunks = [stream] if split == "whole" else [stream[i : i + 1] for i in range(len(stream))]
    readings, replies, dec = decode(chunks)
    assert [(r.t, bp(r)) for r in readings] == [(len(chunks) - 1, (120, 80, 93, 72, Quality.NONE))]
    assert [summary(r) for r in replies] == [MEASUREMENT_REPLIES[-1]]
    assert (dec.frames_bad, dec.bytes_skipped, dec.records) == (1, 2, 1)
    assert dec._pending == b""


def test_a_cut_frame_then_silence_is_discarded_and_never_completed_by_later_replies():
    """A partial frame left when the module falls silent goes when the next command goes out;
    what follows is new, and no old result comes back under a newer time."""
    dec = SuntechAdvantageDecoder(device="nibp")
    assert dec.feed(CUT + RESULT[:10], 1.0) == []
    assert dec.discard_partial() == 12
    assert (dec.frames_bad, dec.bytes_skipped) == (1, 12)
    assert dec.discard_partial() == 0  # nothing left: nothing counted twice
    stream = b"".join(MEASUREMENT)
    for i in range(len(stream)):
        readings = dec.feed(stream[i : i + 1], 2.0 + i)
        assert all(r.t == 2.0 + len(stream) - 1 for r in readings)
    assert summary(dec.take_replies()[-1]) == MEASUREMENT_REPLIES[-1]
    assert (dec.frames_bad, dec.bytes_skipped, dec.records) == (1, 12, 1)


def test_discarding_a_lone_sync_byte_counts_no_frame():
    dec = SuntechAdvantageDecoder(device="nibp")
    dec.feed(b"\x00>", 0.0)
    assert dec.discard_partial() == 1
    assert (dec.frames_bad, dec.bytes_skipped) == (0, 2)


@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_a_cut_result_followed_by_a_new_one_gives_only_the_new_one(split):
    """A result that lost its tail, then the next whole result: one reading, the new one."""
    old = bp_data(sys=150, dia=95, mean=113, pr=80)[:15]
    stream = old + ACK_K + RESULT
    chunks = [stream] if split == "whole" else [stream[i : i + 1] for i in range(len(stream))]
    readings, replies, dec = decode(chunks)
    assert [bp(r) for r in readings] == [(120, 80, 93, 72, Quality.NONE)]
    assert [summary(r) for r in replies] == [(Ack, AckCode.COMPLETED), MEASUREMENT_REPLIES[-1]]
    if split == "bytes":  # each when its last byte came, not when the cut frame's length passed
        assert [r.t for r in replies] == [len(old + ACK_K) - 1, len(stream) - 1]
    assert (dec.frames_bad, dec.bytes_skipped) == (1, len(old))


def test_unparsed_bytes_are_bounded():
    dec = SuntechAdvantageDecoder(device="nibp")
    rng = random.Random(5)
    for i in range(300):
        dec.feed(rng.choice([b">", b"\x43", b"\x18"]) + rng.randbytes(rng.randint(0, 40)), i)
        assert len(dec._pending) < MAX_FRAME
    dec.feed(b"\x00" * MAX_FRAME + ACK_K, 301.0)
    assert summary(dec.take_replies()[-1]) == (Ack, AckCode.COMPLETED)


def test_undrained_replies_are_bounded():
    """Replay never drains the replies: the oldest go, memory does not grow."""
    dec = SuntechAdvantageDecoder(device="nibp")
    for i in range(MAX_REPLIES + 50):
        dec.feed(cuff(i), float(i))
    assert isinstance(dec._replies, deque)
    replies = dec.take_replies()
    assert len(replies) == MAX_REPLIES
    assert summary(replies[-1]) == (CuffPressure, MAX_REPLIES + 49)


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=80))
def test_arbitrary_bytes_never_raise(data, chunk):
    dec = SuntechAdvantageDecoder(device="nibp")
    readings: list[Reading] = []
    for i in range(0, len(data), chunk):
        readings += dec.feed(data[i : i + chunk], 0.0)
    for r in readings:
        assert (r.sys is None) == (r.dia is None) == (r.map is None)
        if r.sys is not None:
            assert r.dia is not None
            assert r.map is not None
            assert 1 <= r.dia < r.sys <= 300
            assert r.dia <= r.map <= r.sys
    results = [r for r in dec.take_replies() if isinstance(r, BpResult)]
    assert len(results) == len(readings)
    assert len([r for r in results if r.error != ERROR_IMPOSSIBLE]) == dec.records
    assert len(dec._pending) < MAX_FRAME


_frames = st.lists(
    st.one_of(
        st.sampled_from([ACK_O, ACK_K, ACK_E, RESULT, ARTIFACT, VERSION]),
        st.integers(-20, 300).map(cuff),
    ),
    min_size=1,
    max_size=12,
)


@given(st.binary(max_size=300).map(lambda b: b.replace(b">", b"")), _frames, st.integers(1, 80))
def test_valid_frames_after_garbage_without_a_sync_byte_decode_completely(garbage, frames, chunk):
    stream = garbage + b"".join(frames)
    _, replies, dec = decode([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    _, expected, _ = decode([b"".join(frames)])
    assert [summary(r) for r in replies] == [summary(r) for r in expected]
    assert (dec.bytes_skipped, dec.frames_bad) == (len(garbage), 0)


@given(st.binary(max_size=300), _frames, st.integers(1, 80))
def test_valid_frames_after_any_garbage_and_a_gap_decode_completely(garbage, frames, chunk):
    """A false frame started in noise ends within MAX_FRAME bytes: a gap that long isolates it."""
    stream = garbage + bytes(MAX_FRAME) + b"".join(frames)
    _, replies, _ = decode([stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    _, expected, _ = decode([b"".join(frames)])
    assert [summary(r) for r in replies[-len(expected) :]] == [summary(r) for r in expected]
