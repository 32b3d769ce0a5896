"""The simulator's encoders speak each protocol so that the repo's decoders read them back.

Every protocol: values, "no value", the quality flags each protocol can carry, and split
reads. Then the players: a whole scenario rendered to bytes decodes to what the model says.
"""

# ruff: noqa: DTZ001 (a device clock is naive local time)

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.devices.contec import ContecV7Decoder
from sessiond.devices.decoder import Decoder
from sessiond.devices.masimo import MasimoAscii1Decoder
from sessiond.devices.nonin import NoninDf7Decoder
from sessiond.devices.suntech import (
    Ack,
    AckCode,
    BpResult,
    CuffPressure,
    ReturnString,
    SuntechAdvantageDecoder,
)
from sessiond.model import Quality, Reading
from sessiond.sim import contec, nonin
from sessiond.sim.devices import (
    ContecV7Player,
    MasimoPlayer,
    NoninDf7Player,
    Session,
    StreamingPlayer,
)
from sessiond.sim.masimo import (
    EXC_INTERFERENCE,
    EXC_LOW_PERFUSION,
    EXC_LOW_SIGNAL_IQ,
    EXC_SENSOR_OFF,
    EXC_SET,
    masimo_line,
)
from sessiond.sim.oximetry import oximeter_track
from sessiond.sim.physiology import simulate_patient
from sessiond.sim.scenario import (
    LowPerfusion,
    MotionArtifact,
    Scenario,
    SensorOff,
)
from sessiond.sim.suntech import (
    ack,
    bp_data_frame,
    cuff_pressure_frame,
    return_string_frame,
)

# --- Masimo -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "flags"),
    [
        (EXC_SET, Quality.NONE),
        (EXC_SET | EXC_INTERFERENCE, Quality.ARTIFACT),
        (EXC_SET | EXC_LOW_PERFUSION, Quality.LOW_PERFUSION),
        (
            EXC_SET | EXC_LOW_PERFUSION | EXC_LOW_SIGNAL_IQ,
            Quality.LOW_PERFUSION | Quality.LOW_SIGNAL,
        ),
    ],
)
def test_masimo_flags_round_trip(exc: int, flags: Quality) -> None:
    """Each EXC bit the simulator sets reads back as its quality flag, values kept."""
    line = masimo_line(device_time=datetime(2026, 1, 5, 9), spo2=93, pr=131, pi=0.31, exc=exc)
    (reading,) = MasimoAscii1Decoder(device="spo2").feed(line, 1.0)
    assert (reading.spo2, reading.pr, reading.pi, reading.flags) == (93, 131, 0.31, flags)


def test_masimo_sensor_off_round_trips_to_no_values() -> None:
    line = masimo_line(
        device_time=datetime(2026, 1, 5, 9), spo2=None, pr=None, pi=None, exc=EXC_SENSOR_OFF
    )
    (reading,) = MasimoAscii1Decoder(device="spo2").feed(line, 1.0)
    assert (reading.spo2, reading.pr, reading.pi) == (None, None, None)
    assert reading.flags == Quality.SENSOR_OFF


# --- Nonin DF7 ----------------------------------------------------------------------------


def decode_df7(data: bytes, *, split: int = 0) -> tuple[list[Reading], NoninDf7Decoder]:
    decoder = NoninDf7Decoder(device="spo2")
    if split:
        readings: list[Reading] = []
        for i in range(0, len(data), split):
            readings += decoder.feed(data[i : i + split], 0.0)
    else:
        readings = decoder.feed(data, 0.0)
    return readings, decoder


@given(
    spo2=st.integers(0, 100),
    pr=st.integers(18, 321),
    pleth=st.lists(st.integers(0, 0xFFFF), min_size=25, max_size=25),
    packet=st.integers(0, 100_000),
)
def test_df7_values_and_pleth_round_trip(spo2: int, pr: int, pleth: list[int], packet: int) -> None:
    """SpO2, a pulse rate above 127 (its MSB in VALUE 0) and 16-bit pleth come back exactly."""
    data = nonin.df7_packet(spo2=spo2, pr=pr, pleth=tuple(pleth), packet=packet)
    assert len(data) == 125
    (reading,), decoder = decode_df7(data)
    assert (reading.spo2, reading.pr) == (spo2, pr)
    assert decoder.waveform() == tuple(pleth)  # the pleth is a waveform, not in the Reading
    assert reading.flags == Quality.NONE
    assert decoder.frames_bad == decoder.bytes_skipped == 0


@pytest.mark.parametrize(
    ("status", "perfusion", "flags", "values"),
    [
        (0, nonin.PERFUSION_GREEN, Quality.NONE, (97, 72)),
        (0, nonin.PERFUSION_YELLOW, Quality.NONE, (97, 72)),
        (0, nonin.PERFUSION_RED, Quality.LOW_PERFUSION, (97, 72)),
        (nonin.ARTF, nonin.PERFUSION_GREEN, Quality.ARTIFACT, (97, 72)),
        (nonin.SNSD, 0, Quality.SENSOR_OFF, (None, None)),
    ],
)
def test_df7_status_bits_round_trip(
    status: int, perfusion: int, flags: Quality, values: tuple[int | None, int | None]
) -> None:
    """Artifact, perfusion colours and sensor off read back as the decoder's flags."""
    off = status & nonin.SNSD
    data = nonin.df7_packet(
        spo2=None if off else 97, pr=None if off else 72, status=status, perfusion=perfusion
    )
    (reading,), _ = decode_df7(data)
    assert reading.flags == flags
    assert (reading.spo2, reading.pr) == values


def test_df7_missing_values_are_the_sentinels() -> None:
    """No SpO2 / HR: 127 and 511 on the wire, None after decoding."""
    data = nonin.df7_packet(spo2=None, pr=None)
    assert data[2 * 5 + 3] == 127  # VALUE byte 2: SpO2
    assert (data[3], data[5 + 3]) == (0x03, 0x7F)  # HR MSB, LSB: 511
    (reading,), _ = decode_df7(data)
    assert (reading.spo2, reading.pr) == (None, None)


# --- Contec V7 ----------------------------------------------------------------------------


def v7(**over: object) -> bytes:
    fields: dict[str, object] = {
        "spo2": 97,
        "pr": 65,
        "pi_hundredths": 290,
        "pleth": 51,
        "signal": 5,
        "bar": 6,
        "finger_out": False,
        "searching": False,
        "beep": False,
    } | over
    arrays = {k: np.array([v]) for k, v in fields.items()}
    return contec.v7_live_packets(contec.v7_live_data(**arrays))


@pytest.mark.parametrize(
    ("captured", "fields"),
    [
        # devices.md §1.2: headrotor's capture and MarkMLl's "nominal operation" packet.
        ("01E085B396C1E1FFFF", {"signal": 5, "pleth": 51, "bar": 6, "pr": 65, "spo2": 97}),
        ("01e085d59abde3ffff", {"signal": 5, "pleth": 85, "bar": 10, "pr": 61, "spo2": 99}),
    ],
)
def test_v7_packets_match_captured_devices(captured: str, fields: dict[str, int]) -> None:
    """The encoder reproduces captured live packets byte for byte (PI unsupported)."""
    assert v7(pi_hundredths=contec.NO_PI, **fields) == bytes.fromhex(captured)


@given(
    spo2=st.integers(0, 100),
    pr=st.integers(0, 254),
    pi=st.integers(0, 2000),
    pleth=st.integers(0, 127),
)
def test_v7_values_round_trip(spo2: int, pr: int, pi: int, pleth: int) -> None:
    """SpO2, PR (with its bit 7 in the high byte), PI in hundredths and pleth come back."""
    data = v7(spo2=spo2, pr=pr, pi_hundredths=pi, pleth=pleth)
    decoder = ContecV7Decoder(device="spo2")
    (reading,) = decoder.feed(data, 0.0)
    assert (reading.spo2, reading.pr, reading.pi) == (spo2, pr, pi / 100)
    assert decoder.waveform() == (pleth,)  # the pleth is a waveform, not in the Reading
    assert reading.flags == Quality.NONE
    assert decoder.frames_bad == decoder.bytes_skipped == 0


@pytest.mark.parametrize(
    ("over", "flags", "values"),
    [
        ({"finger_out": True}, Quality.SENSOR_OFF | Quality.SEARCHING, (None, None)),
        ({"searching": True}, Quality.SEARCHING, (97, 65)),
        ({"beep": True}, Quality.NONE, (97, 65)),
    ],
)
def test_v7_flags_round_trip(
    over: dict[str, object], flags: Quality, values: tuple[int | None, int | None]
) -> None:
    """Finger out (with "searching too long") withholds values; searching flags them."""
    (reading,) = ContecV7Decoder(device="spo2").feed(v7(**over), 0.0)
    assert reading.flags == flags
    assert (reading.spo2, reading.pr) == values


def test_contec_device_streams_only_after_start_and_stops_without_keepalive() -> None:
    """`A1` starts a 30 s stream, `AF` prolongs a running one, `A2` stops and is acknowledged."""
    device = contec.ContecV7Device()
    assert not device.streaming(0.0)
    assert device.receive(contec.v7_command(contec.CMD_KEEPALIVE), 0.0) == b""
    assert not device.streaming(0.1)  # a keep-alive does not start a stream
    start = ContecV7Decoder.start_command()
    assert device.receive(start[:4], 1.0) == b""  # split across reads
    assert device.receive(start[4:], 1.0) == b""
    assert device.streaming(1.0)
    assert device.streaming(30.9)
    assert not device.streaming(31.0)
    device.receive(start, 40.0)
    device.receive(contec.v7_command(contec.CMD_KEEPALIVE), 60.0)
    assert device.streaming(89.0)
    assert device.receive(ContecV7Decoder.stop_command(), 61.0) == bytes.fromhex("0C80")
    assert not device.streaming(61.0)
    # Identification replies as captured, framed for the decoder.
    version = device.receive(b"\xff\x00" + contec.v7_command(0xA0), 62.0)
    assert version == bytes.fromhex("06808087")
    decoder = ContecV7Decoder(device="spo2")
    assert decoder.feed(version, 0.0) == []
    assert decoder.frames_other == 1
    assert device.commands[-1] == 0xA0


# --- SunTech ------------------------------------------------------------------------------


def test_suntech_frames_round_trip_through_the_decoder() -> None:
    """Every reply the module emulator sends is a checksummed frame the decoder reads."""
    decoder = SuntechAdvantageDecoder(device="nibp")
    data = (
        ack(AckCode.RECEIVED)
        + cuff_pressure_frame(163)
        + cuff_pressure_frame(-2)
        + ack(AckCode.COMPLETED)
        + bp_data_frame(sys=142, dia=91, map_=108, pr=77)
        + bp_data_frame(sys=0, dia=0, map_=0, pr=0, error=0x57)
        + return_string_frame("LX")
    )
    readings = []
    for b in data:  # byte by byte
        readings += decoder.feed(bytes([b]), 3.0)
    assert [(r.sys, r.dia, r.map, r.pr) for r in readings] == [
        (142, 91, 108, 77),
        (None, None, None, None),
    ]
    assert decoder.take_replies() == [
        Ack(t=3.0, code=AckCode.RECEIVED),
        CuffPressure(t=3.0, mmhg=163),
        CuffPressure(t=3.0, mmhg=-2),
        Ack(t=3.0, code=AckCode.COMPLETED),
        BpResult(t=3.0, sys=142, dia=91, map=108, pr=77, error=0),
        BpResult(t=3.0, sys=None, dia=None, map=None, pr=None, error=0x57),
        ReturnString(t=3.0, text="LX"),
    ]
    assert decoder.frames_bad == decoder.bytes_skipped == 0


def test_suntech_error_codes_carry_their_quality() -> None:
    """0x02 (artifact) and 0x01 (weak signal) come back as flags; values are None."""
    decoder = SuntechAdvantageDecoder(device="nibp")
    (artifact,) = decoder.feed(bp_data_frame(sys=0, dia=0, map_=0, pr=0, error=0x02), 0.0)
    (weak,) = decoder.feed(bp_data_frame(sys=0, dia=0, map_=0, pr=0, error=0x01), 0.0)
    assert artifact.flags == Quality.ARTIFACT
    assert weak.flags == Quality.LOW_SIGNAL
    assert artifact.sys is None


# --- players: a whole scenario decodes to the model ----------------------------------------

EVENTS = Scenario(
    name="flags",
    seed=21,
    duration_s=240,
    events=(
        SensorOff(kind="sensor_off", at_s=30, duration_s=20),
        MotionArtifact(kind="motion_artifact", at_s=80, duration_s=30),
        LowPerfusion(kind="low_perfusion", at_s=140, duration_s=80, pi=0.15, ramp_s=10),
    ),
)


def session(scenario: Scenario) -> Session:
    vitals = simulate_patient(scenario)
    return Session(
        scenario=scenario, vitals=vitals, track=oximeter_track(scenario, vitals), garbage={}
    )


def per_second(readings: list[Reading]) -> dict[int, list[Reading]]:
    """Readings grouped by the session second their time stamp falls in."""
    out: dict[int, list[Reading]] = {}
    for r in readings:
        out.setdefault(int(r.t), []).append(r)
    return out


def decode_rendered(player: StreamingPlayer, decoder: Decoder, chunks: range) -> list[Reading]:
    """Render chunk by chunk and decode each at its chunk's time."""
    readings: list[Reading] = []
    for c in chunks:
        (data,) = player.render(c, c + 1)
        readings += decoder.feed(data, c / player.chunks_per_s)
    return readings


def test_masimo_player_lines_follow_the_track() -> None:
    """Every second's line decodes to the track's values and the events' flags."""
    s = session(EVENTS)
    player = MasimoPlayer(name="spo2", session=s, emit=lambda _p: None)
    readings = MasimoAscii1Decoder(device="spo2").feed(
        b"".join(player.render(0, EVENTS.duration_s)), 0.0
    )
    assert len(readings) == EVENTS.duration_s
    track = s.track
    for k, r in enumerate(readings):
        if track.sensor_off[k]:
            assert r.flags == Quality.SENSOR_OFF
            assert r.spo2 is None
            continue
        assert (r.spo2, r.pr, r.pi) == (track.spo2[k], track.pr[k], track.pi[k])
        assert (Quality.ARTIFACT in r.flags) == bool(track.artifact[k])
        assert (Quality.LOW_PERFUSION in r.flags) == bool(track.low_perfusion[k])
        assert (Quality.LOW_SIGNAL in r.flags) == bool(track.low_signal[k])


def test_nonin_player_packets_follow_the_track() -> None:
    """75 Hz DF7: every packet decodes; a reading at each change and at least once a second,
    with the track's values and flags where the events are; the pleth is the waveform."""
    s = session(EVENTS)
    player = NoninDf7Player(name="spo2", session=s, emit=lambda _p: None)
    decoder = NoninDf7Decoder(device="spo2")
    readings: list[Reading] = []
    waveform: list[tuple[float, tuple[int, ...]]] = []
    for c in range(EVENTS.duration_s * 3):
        (data,) = player.render(c, c + 1)
        readings += decoder.feed(data, c / player.chunks_per_s)
        waveform.append((c / player.chunks_per_s, decoder.waveform()))
    assert decoder.records == EVENTS.duration_s * 3
    assert decoder.frames_bad == decoder.bytes_skipped == 0
    assert all(len(samples) == 25 for _, samples in waveform)
    track = s.track
    groups = per_second(readings)
    assert sorted(groups) == list(range(EVENTS.duration_s))  # at least one a second
    for k, group in groups.items():
        for r in group:
            if track.sensor_off[k]:
                assert r.flags == Quality.SENSOR_OFF
                assert (r.spo2, r.pr) == (None, None)
                continue
            assert (r.spo2, r.pr) == (track.spo2[k], track.pr[k])
            assert (Quality.ARTIFACT in r.flags) == bool(track.artifact[k])
    # Red perfusion (LOW_PERFUSION) on the low-PI plateau, none at rest.
    plateau = [r for r in readings if 155 <= r.t < 205]
    rest = [r for r in readings if 60 <= r.t < 75]
    assert all(Quality.LOW_PERFUSION in r.flags for r in plateau)
    assert not any(Quality.LOW_PERFUSION in r.flags for r in rest)
    # The pleth pulses at the heart rate: one big swing per beat.
    pleth = np.concatenate([samples for t, samples in waveform if 60 <= t < 75]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pleth - pleth.mean()))
    freqs = np.fft.rfftfreq(len(pleth), d=1 / 75)
    beat_hz = freqs[1:][spectrum[1:].argmax()]
    assert beat_hz * 60 == pytest.approx(s.vitals.pr[60:75].mean(), rel=0.1)


def test_contec_player_packets_follow_the_track() -> None:
    """60 Hz V7: every packet decodes; finger out, searching under motion, PI in hundredths."""
    s = session(EVENTS)
    player = ContecV7Player(name="spo2", session=s, emit=lambda _p: None)
    decoder = ContecV7Decoder(device="spo2")
    readings = decode_rendered(player, decoder, range(EVENTS.duration_s * 3))
    assert decoder.records == EVENTS.duration_s * 60
    assert decoder.frames_bad == decoder.bytes_skipped == 0
    track = s.track
    for r in readings:
        k = int(r.t)
        if track.sensor_off[k]:
            assert Quality.SENSOR_OFF in r.flags
            assert (r.spo2, r.pr, r.pi) == (None, None, None)
            continue
        assert (r.spo2, r.pr) == (track.spo2[k], track.pr[k])
        assert r.pi == pytest.approx(track.pi[k])
        assert (Quality.SEARCHING in r.flags) == bool(track.artifact[k])
