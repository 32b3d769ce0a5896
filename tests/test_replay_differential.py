"""`replay` against the plain way of driving the monitor, on random Masimo captures.

Replay decodes a block at a time (runs of lines in columns), keeps a bound on the next
deadline and lets the monitor take quiet readings (every rule idle, every value inside its
limits) in one pass (`Monitor.take_quiet`). The plain driver does what the daemon's loop does
for each reading: `advance(t)` to the reading's time, then `on_reading`, with the exact next
deadline every time. Both must write the same lines: readings, phases, alarms, BP requests,
discharge readiness, and the baseline captured at the dose.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sessiond.config import Config
from sessiond.devices import make_decoder
from sessiond.model import Quality, Reading, ReadingColumns, Route
from sessiond.records import replay as replay_module
from sessiond.records.capture import CaptureReader, CaptureWriter
from sessiond.records.replay import REPLAY_USER, replay
from sessiond.session.monitor import Monitor
from sessiond.sim.masimo import masimo_line
from sessiond.wire import event_json, reading_json

if TYPE_CHECKING:
    from pathlib import Path

    from sessiond.model import Event

START = datetime(2026, 11, 22, 9, 0, 0)  # noqa: DTZ001  (a device clock has no zone)
#: What replay writes, and the baseline (which shows only through the BP rules otherwise).
PUBLIC = {"phase", "alarm", "nibp_request", "discharge_ready", "infusion_prompt", "baseline"}

#: Values around the default limits (SpO2 90/85, PR 50/40 and 120/130), and dashes; most
#: inside them, so that runs of quiet readings meet silences and limits.
SPO2 = [None, 80, 84, 86, 89, 90, 90, 92, 96, 97, 97, 98, 100]
PR = [None, 35, 41, 49, 50, 52, 60, 72, 72, 90, 118, 120, 121, 131]
#: EXC words: none, sensor off, low perfusion, pulse search, interference, low signal IQ.
EXC = [0x800] * 6 + [0x820, 0x804, 0x808, 0x810, 0xC00]

#: A run of lines: seconds, values (the same, or drifting by one each second), EXC, and the
#: silence after it (a step of 5 s is when `device_lost` is due).
segment = st.tuples(
    st.integers(1, 90),
    st.sampled_from(SPO2),
    st.sampled_from(PR),
    st.sampled_from(EXC),
    st.sampled_from([0, 0, 0, 0, 3, 4, 7, 40]),
    st.booleans(),
)


def write_capture(
    path: Path, segments: list[tuple[int, Any, Any, int, int, bool]], other: int | None = None
) -> float:
    """The segments' lines on port `spo2`; with `other`, a second oximeter's line every
    `other` seconds in between (port `ox2`)."""
    ports = {"spo2": "masimo-ascii1"} | ({} if other is None else {"ox2": "masimo-ascii1"})
    writer = CaptureWriter(path, ports)
    second = 0
    for n, spo2, pr, exc, gap, drift in segments:
        for k in range(n):
            wobble = (k % 3 - 1) if drift else 0
            data = masimo_line(
                device_time=START + timedelta(seconds=second),
                spo2=None if spo2 is None else min(100, spo2 + wobble),
                pr=None if pr is None else pr + wobble,
                pi=None if spo2 is None else 1.5 + (second % 7) / 10,
                exc=exc,
            )
            # Two pieces, as a UART delivers them; the second ends the line.
            writer.write(second + 0.25, "spo2", "<", data[:40])
            writer.write(second + 0.26, "spo2", "<", data[40:])
            if other is not None and second % other == 0:
                line = masimo_line(device_time=START + timedelta(seconds=second), spo2=96,
                                   pr=70 + second % 3, pi=2.0)  # fmt: skip
                writer.write(second + 0.5, "ox2", "<", line)
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
    with path.open(encoding="utf-8") as f:
        ports = list(CaptureReader(f).ports)
    monitor = Monitor(config=config, streaming=ports, start=0.0)
    decoders = {port: make_decoder("masimo-ascii1", device=port) for port in ports}
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
            # Each line's bytes, to its port's decoder, in line order.
            by_line = {
                line: (port, k)
                for port, pieces in block.pieces.items()
                for k, line in enumerate(pieces.lines.tolist())
            }
            for i, t in enumerate(block.times.tolist()):
                last = t
                if i not in by_line:
                    continue
                port, k = by_line[i]
                pieces = block.pieces[port]
                start = 0 if k == 0 else int(pieces.ends[k - 1])
                data = bytes(pieces.data[start : pieces.ends[k]])
                for reading in decoders[port].feed(data, t):
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
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segments=st.lists(segment, min_size=1, max_size=12),
    dose=st.one_of(st.none(), st.floats(0.0, 600.0)),
    other=st.one_of(st.none(), st.sampled_from([1, 3, 30])),
)
def test_replay_writes_what_the_plain_driver_writes(tmp_path, monkeypatch, segments, dose, other):
    """With a second oximeter too, whose readings come between the first's."""
    monkeypatch.setattr(replay_module, "_PUBLIC_TYPES", PUBLIC)
    path = tmp_path / "ox.cap"
    write_capture(path, segments, other)
    config = Config()
    assert by_replay(path, config, dose) == by_plain_driver(path, config, dose)


# --- the monitor's quiet stretches, with a second oximeter, a BP module and a dose ----------


def _short() -> Config:
    """Phases, discharge minimum and SpO2 window of minutes: readiness comes and goes."""
    base = Config()
    iv = replace(base.timeline.iv, onset_min=1.0, effect_end_min=3.0, discharge_after_min=4.0)
    return base.model_copy(update={
        "timeline": replace(base.timeline, iv=iv),
        "discharge": replace(base.discharge, spo2_window_min=1.0),
    })  # fmt: skip


CONFIGS = [Config(), _short()]
USER = {"user": "ana", "source": "test"}


def drive(
    monitor: Monitor,
    ours: ReadingColumns,
    theirs: list[Reading],
    dose: float | None,
    *,
    bulk: bool,
) -> list[dict[str, Any]]:
    """Every reading in time order (the others' first at equal times), each after `advance`
    to its time, and the dose; with `bulk`, each stretch of ours that `take_quiet` takes, as
    replay does."""
    out: list[Event] = monitor.start_session(0.0, session_id="s", route=Route.IV, **USER)
    i = j = 0
    while i < len(ours) or j < len(theirs):
        if j < len(theirs) and (i >= len(ours) or theirs[j].t <= ours.t[i]):
            reading = theirs[j]
            j += 1
        else:
            reading = ours[i]
            i += 1
        if dose is not None and dose <= reading.t:
            out += monitor.advance(dose) + monitor.mark_dose(dose, reason="test", **USER)
            dose = None
        out += monitor.advance(reading.t) + monitor.on_reading(reading)
        if bulk and reading.device == ours.device:
            until = min(theirs[j].t if j < len(theirs) else math.inf, dose or math.inf)
            i, events = monitor.take_quiet(ours, i, until)
            out += events
    last = max([*ours.t, *(r.t for r in theirs), 0.0])
    return [event_json(e) for e in out + monitor.advance(last + 600.0)]


@settings(max_examples=100, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.integers(1, 200),
            st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 4.99, 5.0, 7.0]),
            st.sampled_from([90, 91, 92, 93, 96, 97, 97, 98]),
            st.sampled_from([52, 60, 70, 72, 72, 75, 90, 118]),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    oximeter=st.one_of(st.just([]), st.lists(st.floats(0.0, 900.0), max_size=6)),
    bp_every=st.one_of(st.none(), st.sampled_from([30.0, 60.0, 250.0])),
    dose=st.one_of(st.none(), st.floats(0.0, 300.0)),
    config=st.sampled_from(range(len(CONFIGS))),
)
# Ready from the end of the SpO2 window; a dip to 91 % in a quiet stretch ends it there, and
# the window that starts again within the stretch (at a half second) ends between readings.
@example(
    runs=[(760, 1.0, 97, 72, False), (30, 1.0, 91, 72, False), (1, 1.5, 97, 72, False),
          (1, 0.5, 97, 72, False), (300, 1.0, 97, 72, False)],
    oximeter=[], bp_every=250.0, dose=300.5, config=1,
)  # fmt: skip
def test_quiet_stretches_are_what_one_by_one_gives(runs, oximeter, bp_every, dose, config):
    """`take_quiet` stops before every deadline (the other oximeter's silence, the BP
    schedule's requests, the phases, readiness's own) and its own silence, and after the
    first reading that changes readiness: the events and the next deadline are the same."""
    # Runs of readings: how many, how often, their values (the same, or drifting by one).
    steps = [
        (period, spo2 + (k % 3 - 1) * drift, pr + (k % 3 - 1) * drift)
        for count, period, spo2, pr, drift in runs
        for k in range(count)
    ]
    times = list(itertools.accumulate(step for step, _, _ in steps))
    ours = ReadingColumns(
        device="a", t=times, spo2=[s for _, s, _ in steps], pr=[p for _, _, p in steps],
        pi=[None] * len(steps), flags=Quality.NONE, device_time=lambda a, b: [None] * (b - a),
    )  # fmt: skip
    bp = [] if bp_every is None else [k * bp_every for k in range(1, int(times[-1] / bp_every))]
    theirs = sorted(
        [Reading(t=t, device="b", spo2=97, pr=70) for t in oximeter]
        + [Reading(t=t, device="nibp", sys=120 + t % 7, dia=80, pr=72) for t in bp],
        key=lambda r: r.t,
    )
    # Without a second oximeter or a BP module, no alarm of theirs keeps readiness away.
    streaming, nibp = ["a", "b"] if oximeter else ["a"], ["nibp"] if bp_every else []
    one_by_one = Monitor(config=CONFIGS[config], streaming=streaming, nibp=nibp)
    in_bulk = Monitor(config=CONFIGS[config], streaming=streaming, nibp=nibp)
    got = drive(in_bulk, ours, theirs, dose, bulk=True)
    assert got == drive(one_by_one, ours, theirs, dose, bulk=False)
    assert in_bulk.next_due() == one_by_one.next_due()
