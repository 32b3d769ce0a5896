"""`replay` against the plain way of driving the monitor, on random Masimo captures.

Replay decodes a block at a time, keeps a bound on the next deadline and lets the alarm
engine take quiet readings (every rule idle, every value inside its limits) on a short path.
The plain driver does what the daemon's loop does for each reading: `advance(t)` to the
reading's time, then `on_reading`, with the exact next deadline every time. Both must write
the same lines: readings, phases, alarms, BP requests, discharge readiness.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessiond.config import Config
from sessiond.devices import make_decoder
from sessiond.model import Route
from sessiond.records.capture import CaptureReader, CaptureWriter
from sessiond.records.replay import REPLAY_USER, replay
from sessiond.session.monitor import Monitor
from sessiond.sim.masimo import masimo_line
from sessiond.wire import event_json, reading_json

if TYPE_CHECKING:
    from pathlib import Path

    from sessiond.model import Event

START = datetime(2026, 11, 22, 9, 0, 0)  # noqa: DTZ001  (a device clock has no zone)
PUBLIC = {"phase", "alarm", "nibp_request", "discharge_ready", "infusion_prompt"}

#: Values around the default limits (SpO2 90/85, PR 50/40 and 120/130), and dashes.
SPO2 = [None, 80, 84, 86, 89, 90, 92, 97]
PR = [None, 35, 41, 49, 52, 72, 118, 121, 131]
#: EXC words: none, sensor off, low perfusion, pulse search, interference, low signal IQ.
EXC = [0x800, 0x800, 0x800, 0x820, 0x804, 0x808, 0x810, 0xC00]

#: A run of equal lines: seconds, values, EXC, and the silence after it.
segment = st.tuples(
    st.integers(1, 90),
    st.sampled_from(SPO2),
    st.sampled_from(PR),
    st.sampled_from(EXC),
    st.sampled_from([0, 0, 0, 3, 7, 40]),
)


def write_capture(path: Path, segments: list[tuple[int, Any, Any, int, int]]) -> float:
    writer = CaptureWriter(path, {"spo2": "masimo-ascii1"})
    second = 0
    for n, spo2, pr, exc, gap in segments:
        for _ in range(n):
            data = masimo_line(
                device_time=START + timedelta(seconds=second), spo2=spo2, pr=pr,
                pi=None if spo2 is None else 1.5 + (second % 7) / 10, exc=exc,
            )  # fmt: skip
            # Two pieces, as a UART delivers them; the second ends the line.
            writer.write(second + 0.25, "spo2", "<", data[:40])
            writer.write(second + 0.26, "spo2", "<", data[40:])
            second += 1
        second += gap
    writer.close()
    return second + 0.26


def by_replay(path: Path, config: Config, dose_at: float | None) -> list[str]:
    out = io.StringIO()
    with path.open(encoding="utf-8") as f:
        replay(CaptureReader(f), config=config, dose_at=dose_at, readings=True, write=out.write)
    return out.getvalue().splitlines()[:-1]  # the summary aside


def by_plain_driver(path: Path, config: Config, dose_at: float | None) -> list[str]:
    monitor = Monitor(config=config, streaming=["spo2"], start=0.0)
    decoder = make_decoder("masimo-ascii1", device="spo2")
    lines: list[str] = []

    def emit(events: list[Event]) -> None:
        for event in events:
            out = event_json(event)
            if out["type"] in PUBLIC:
                lines.append(json.dumps(out))

    emit(monitor.start_session(0.0, session_id="replay", route=Route.IV, user=REPLAY_USER,
                               source="replay"))  # fmt: skip
    with path.open(encoding="utf-8") as f:
        reader = CaptureReader(f)
        last = 0.0
        for block in reader.blocks():
            for i, t in enumerate(block.times.tolist()):
                last = t
                pieces = block.pieces.get("spo2")
                if pieces is None or i not in pieces.lines.tolist():
                    continue
                k = pieces.lines.tolist().index(i)
                start = 0 if k == 0 else int(pieces.ends[k - 1])
                for reading in decoder.feed(bytes(pieces.data[start : pieces.ends[k]]), t):
                    if dose_at is not None and dose_at <= reading.t:
                        emit(monitor.advance(dose_at))
                        emit(monitor.mark_dose(dose_at, user=REPLAY_USER, source="replay",
                                               reason="dose time given to replay"))  # fmt: skip
                        dose_at = None
                    emit(monitor.advance(reading.t))
                    lines.append(json.dumps(reading_json(reading)))
                    emit(monitor.on_reading(reading))
    if dose_at is not None and dose_at <= last:
        emit(monitor.advance(dose_at))
        emit(monitor.mark_dose(dose_at, user=REPLAY_USER, source="replay",
                               reason="dose time given to replay"))  # fmt: skip
    emit(monitor.advance(last))
    return lines


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segments=st.lists(segment, min_size=1, max_size=12),
    dose=st.one_of(st.none(), st.floats(0.0, 600.0)),
)
def test_replay_writes_what_the_plain_driver_writes(tmp_path, segments, dose):
    path = tmp_path / "ox.cap"
    write_capture(path, segments)
    config = Config()
    assert by_replay(path, config, dose) == by_plain_driver(path, config, dose)
