"""Capture files and `sessiond replay` (DESIGN §6), through the real command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from sessiond.config import Config
from sessiond.devices.suntech import (
    AckCode,
    cuff_pressure_command,
    read_result_command,
    start_measurement_command,
)
from sessiond.records.capture import CaptureError, CaptureReader, CaptureWriter
from sessiond.records.replay import replay
from sessiond.sim.masimo import masimo_line
from sessiond.sim.suntech import ack, bp_data_frame

START = datetime(2026, 11, 22, 9, 0, 0)  # noqa: DTZ001


def line(second: int, spo2: int | None, exc: int = 0x800) -> bytes:
    from datetime import timedelta  # noqa: PLC0415

    pr = None if spo2 is None else 72
    pi = None if spo2 is None else 2.5
    return masimo_line(device_time=START + timedelta(seconds=second), spo2=spo2, pr=pr, pi=pi,
                       exc=exc)  # fmt: skip


def write_capture(path: Path, spo2_at) -> None:
    writer = CaptureWriter(path, {"spo2": "masimo-ascii1"})
    for s in range(300):
        spo2, exc = spo2_at(s)
        data = line(s, spo2, exc)
        writer.write(s + 0.25, "spo2", "<", data[:30])  # split chunks, as a UART delivers them
        writer.write(s + 0.26, "spo2", "<", data[30:])
    writer.close()


def run_replay(path: Path, *args: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    with path.open(encoding="utf-8") as f:
        reader = CaptureReader(f)
        config = Config()
        dose = float(args[args.index("--dose-at") + 1]) if "--dose-at" in args else None
        replay(reader, config=config, dose_at=dose, readings="--readings" in args,
               write=out.write)  # fmt: skip
    return [json.loads(x) for x in out.getvalue().splitlines()]


def desat_then_sensor_off(s: int) -> tuple[int | None, int]:
    if 100 <= s < 140:
        return 87, 0x800
    if 200 <= s < 230:
        return None, 0x820
    return 97, 0x800


def test_replay_reports_phases_alarms_and_summary(tmp_path):
    cap = tmp_path / "s.cap"
    write_capture(cap, desat_then_sensor_off)
    events = run_replay(cap, "--dose-at", "60")
    kinds = [(e["type"], e.get("id") or e.get("phase"), e.get("state")) for e in events]
    assert kinds == [
        ("phase", "baseline", None),
        ("phase", "onset", None),
        ("alarm", "spo2_low", "active"),
        ("alarm", "spo2_low", "cleared"),
        ("alarm", "sensor_off", "active"),
        ("alarm", "sensor_off", "cleared"),
        ("summary", None, None),
    ]
    by = {(e["type"], e.get("id"), e.get("state")): e for e in events}
    assert by[("alarm", "spo2_low", "active")]["t"] == pytest.approx(115.26)
    assert by[("alarm", "spo2_low", "active")]["value"] == 87.0
    assert by[("alarm", "spo2_low", "active")]["limit"] == 90.0
    assert by[("alarm", "sensor_off", "active")]["t"] == pytest.approx(205.26)
    assert events[-1] == {"t": 299.26, "type": "summary", "readings": 300, "frames_bad": 0,
                          "bytes_skipped": 0}  # fmt: skip


def test_replay_readings_have_no_number_for_dashes(tmp_path):
    cap = tmp_path / "s.cap"
    write_capture(cap, desat_then_sensor_off)
    readings = [e for e in run_replay(cap, "--readings") if e["type"] == "reading"]
    assert len(readings) == 300
    assert readings[0] == {"t": 0.26, "type": "reading", "device": "spo2", "spo2": 97, "pr": 72,
                           "pi": 2.5, "flags": []}  # fmt: skip
    off = readings[210]
    assert "spo2" not in off
    assert off["flags"] == ["sensor_off"]


def test_gap_in_capture_raises_device_lost_at_gap_plus_five(tmp_path):
    """Deadlines fire on the capture's clock, not when the next line comes."""
    cap = tmp_path / "gap.cap"
    writer = CaptureWriter(cap, {"spo2": "masimo-ascii1"})
    writer.write(1.0, "spo2", "<", line(1, 97))
    writer.write(70.0, "spo2", "<", line(70, 97))
    writer.close()
    events = run_replay(cap)
    lost = [(e["t"], e["state"]) for e in events if e.get("id") == "device_lost"]
    assert lost == [(6.0, "active"), (70.0, "cleared")]


@pytest.mark.parametrize(("text", "lineno"), [
    ("nonsense\n", 1),
    ("# sessiond-capture 1\n0.1 spo2 < 30\n", 2),
    ("# sessiond-capture 1\n# port spo2 masimo-ascii1\n0.100 spo2 < 3031\n0.200 spo2 < zz\n", 4),
    ("# sessiond-capture 1\n# port spo2 masimo-ascii1\n5.0 spo2 < 30\n4.0 spo2 < 30\n", 4),
    ("# sessiond-capture 1\n# port spo2 masimo-ascii1\n1.0 nibp < 30\n", 3),
    ("# sessiond-capture 1\n# port spo2 masimo-ascii1\n1.0 spo2 ? 30\n", 3),
    ("# sessiond-capture 1\n# port spo2 masimo-ascii1\n1.0 spo2 <\n", 3),
])  # fmt: skip
def test_bad_capture_names_its_line(text, lineno):
    with pytest.raises(CaptureError) as info:
        list(CaptureReader(io.StringIO(text)))
    assert info.value.line == lineno


def sessiond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessiond", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_cli_replay_writes_json_lines_and_exit_codes(tmp_path):
    cap = tmp_path / "s.cap"
    write_capture(cap, desat_then_sensor_off)
    out = tmp_path / "out.jsonl"
    result = sessiond("replay", str(cap), "--dose-at", "60", "--out", str(out))
    assert result.returncode == 0, result.stderr
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert events[-1]["type"] == "summary"
    bad = tmp_path / "bad.cap"
    bad.write_text("# sessiond-capture 1\n# port spo2 masimo-ascii1\n0.1 spo2 < zz\n")
    result = sessiond("replay", str(bad))
    assert result.returncode == 2
    assert "line 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = sessiond("replay", str(cap), "--route", "teleport")
    assert result.returncode == 2


def test_replay_decodes_a_contec_v7_capture(tmp_path):
    """Every registered decoder replays: a CMS50 V7.0 stream, then the finger comes out."""
    good = bytes.fromhex("01E085B396C1E1FFFF")  # PR 65, SpO2 97 (headrotor capture)
    finger_out = bytes.fromhex("01E185B396C1E1FFFF")  # the same with the finger-out bit
    cap = tmp_path / "contec.cap"
    writer = CaptureWriter(cap, {"ox": "contec-v7"})
    for k in range(40 * 6):  # 40 s, ten packets every 1/6 s
        writer.write(k / 6, "ox", "<", (good if k < 20 * 6 else finger_out) * 10)
    writer.close()
    events = run_replay(cap, "--readings")
    readings = [e for e in events if e["type"] == "reading"]
    assert (readings[0]["spo2"], readings[0]["pr"]) == (97, 65)
    assert readings[-1]["flags"] == ["sensor_off"]
    assert "spo2" not in readings[-1]
    sensor_off = [(e["t"], e["state"]) for e in events if e.get("id") == "sensor_off"]
    assert sensor_off == [(pytest.approx(25.0), "active")]
    assert events[-1]["frames_bad"] == 0


def write_bp_capture(
    path: Path, *, sys: int, dia: int, early: bytes = b"", late: bytes = b""
) -> None:
    """A BP measurement from t=30: the host's commands and the module's replies, `early` bytes
    from the module at t=10 and `late` ones at t=40 (after its `K`, before the result)."""
    writer = CaptureWriter(path, {"nibp": "suntech-advantage"})
    if early:
        writer.write(10.0, "nibp", "<", early)
    writer.write(30.0, "nibp", ">", start_measurement_command())
    writer.write(30.1, "nibp", "<", ack(AckCode.RECEIVED))
    writer.write(31.0, "nibp", ">", cuff_pressure_command())
    writer.write(31.1, "nibp", "<", ack(AckCode.COMPLETED))
    if late:
        writer.write(40.0, "nibp", "<", late)
    writer.write(61.0, "nibp", ">", read_result_command())
    result = bp_data_frame(sys=sys, dia=dia, map_=(sys + 2 * dia) // 3, pr=70)
    writer.write(61.1, "nibp", "<", result)
    writer.close()


def test_replay_a_result_that_cannot_be_a_blood_pressure_is_a_failed_measurement(tmp_path):
    """DIA above SYS (both in range): `nibp_error`, a reading without numbers, a bad frame;
    never `bp_high` or the dose gate from its DIA."""
    cap = tmp_path / "bp.cap"
    write_bp_capture(cap, sys=120, dia=130)
    events = run_replay(cap, "--readings")
    alarms = {(e["id"], e["priority"], e["state"]) for e in events if e["type"] == "alarm"}
    assert alarms == {("nibp_error", "low", "active")}
    readings = [e for e in events if e["type"] == "reading"]
    assert readings == [{"t": 61.1, "type": "reading", "device": "nibp", "flags": []}]
    summary = events[-1]
    assert (summary["readings"], summary["frames_bad"]) == (0, 1)


def test_replay_a_command_ends_a_cut_reply(tmp_path):
    """A reply cut short before a `>` line does not take the start of the next reply as its
    tail: the result after the command is decoded whole, at its own time."""
    # `> 05` (cuff pressure) and a byte that makes it sum to 0 with the result's `> 18`.
    cut = bytes([0x3E, 0x05, -(0x3E + 0x05 + 0x3E + 0x18) & 0xFF])
    cap = tmp_path / "cut.cap"
    write_bp_capture(cap, sys=128, dia=84, late=cut)
    events = run_replay(cap, "--readings")
    bp = [(e["t"], e.get("sys"), e.get("dia")) for e in events if e["type"] == "reading"]
    assert bp == [(61.1, 128, 84)]
    summary = events[-1]
    assert (summary["readings"], summary["frames_bad"], summary["bytes_skipped"]) == (1, 1, 3)


def test_replay_a_cut_frame_before_a_result_does_not_delay_it(tmp_path):
    """`> 43` (the 67-byte return string) then a whole result in the same chunk: the result
    now, not an old result under a later time."""
    cap = tmp_path / "cut43.cap"
    result = bp_data_frame(sys=118, dia=76, map_=90, pr=70)
    write_bp_capture(cap, sys=128, dia=84, early=b">\x43" + result)
    events = run_replay(cap, "--readings")
    bp = [(e["t"], e.get("sys")) for e in events if e["type"] == "reading"]
    assert bp == [(10.0, 118), (61.1, 128)]
    summary = events[-1]
    assert (summary["readings"], summary["frames_bad"], summary["bytes_skipped"]) == (2, 1, 2)


def _df7_packet() -> bytes:
    from sessiond.sim.nonin import df7_packet  # noqa: PLC0415

    return df7_packet(spo2=97, pr=72)


@pytest.mark.parametrize(
    ("protocol", "packet", "per_s", "values"),
    [
        # PR 65, SpO2 97 (headrotor capture), 60 packets a second
        ("contec-v7", lambda: bytes.fromhex("01E085B396C1E1FFFF"), 60, (97, 65)),
        ("nonin-df7", _df7_packet, 3, (97, 72)),
    ],
)
def test_a_repeating_device_gives_a_reading_a_second_and_its_frames_keep_the_device(
    tmp_path, protocol, packet, per_s, values
):
    """Equal packets for 10 s, then one at 30 s: a reading once a second, and `device_lost`
    5 s after the last frame, not after the last reading (DESIGN §5, §6)."""
    cap = tmp_path / "ox.cap"
    writer = CaptureWriter(cap, {"ox": protocol})
    last = 0.0
    for k in range(10 * per_s):
        last = round(k / per_s, 3)
        writer.write(last, "ox", "<", packet())
    writer.write(30.0, "ox", "<", packet())
    writer.close()
    events = run_replay(cap, "--readings")
    readings = [e for e in events if e["type"] == "reading"]
    assert [r["t"] for r in readings] == [float(s) for s in range(10)] + [30.0]
    assert {(r["spo2"], r["pr"]) for r in readings} == {values}
    lost = [(e["t"], e["state"]) for e in events if e.get("id") == "device_lost"]
    assert lost[0] == (pytest.approx(last + 5.0), "active")
    assert events[-1]["readings"] == 10 * per_s + 1  # every packet is a record
