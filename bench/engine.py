"""The alarm engine's cost per reading: prints figures, asserts nothing but equal output.

    .venv/bin/python bench/engine.py [--minutes 30] [--repeat 3]

Feeds the engine alone (`advance(t)` then `on_reading`, as the monitor does) a steady
oximeter stream at 60 Hz (a Contec) and at 1 Hz (a Masimo), with every rule configured and
idle (a BP reading every 10 min keeps `nibp_overdue` quiet), and times the current engine
beside the old one kept in `tests/reference_engine` on the same readings. Both must give
the same events. Then the same through the whole `Monitor` (timeline, BP schedule,
discharge), with either engine inside it.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree, and its tests/

from sessiond.config import Config
from sessiond.model import Phase, Reading, Route
from sessiond.session.alarms import AlarmEngine
from sessiond.session.monitor import Monitor
from tests.reference_engine.alarms import AlarmEngine as ReferenceEngine

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.model import Event


class Engine(Protocol):
    def advance(self, now: float) -> list[Event]: ...
    def on_reading(self, r: Reading) -> list[Event]: ...


def stream(rate_hz: int, minutes: float, rng: random.Random) -> list[Reading]:
    """Normal values (SpO2 95-99 %, PR 62-82 bpm) at `rate_hz`, a BP every 10 min."""
    out: list[Reading] = []
    n = int(minutes * 60 * rate_hz)
    for k in range(n):
        t = k / rate_hz
        if k % (600 * rate_hz) == 0:
            out.append(Reading(t=t, device="nibp", sys=124, dia=78, map=93, pr=70))
        spo2, pr = 97 + rng.randint(-2, 2), 72 + rng.randint(-10, 10)
        out.append(Reading(t=t, device="spo2", spo2=spo2, pr=pr, pi=3.1))
    return out


def engine(cls: Callable[..., Engine], config: Config) -> Engine:
    """Every rule configured; the session dosed and in its effect window."""
    eng = cls(config=config.alarms, streaming=["spo2"], nibp=["nibp"], schedule=config.nibp,
              baseline=config.baseline)  # fmt: skip
    eng.start(0.0)  # type: ignore[attr-defined]
    eng.set_phase(0.0, Phase.BASELINE)  # type: ignore[attr-defined]
    eng.dose(0.0)  # type: ignore[attr-defined]
    eng.set_phase(0.0, Phase.EFFECT)  # type: ignore[attr-defined]
    return eng


def run_engine(eng: Engine, readings: list[Reading]) -> tuple[float, list[Event]]:
    advance, on_reading = eng.advance, eng.on_reading
    out: list[Event] = []
    start = time.perf_counter()
    for r in readings:
        out += advance(r.t)
        out += on_reading(r)
    return time.perf_counter() - start, out


def run_monitor(reference: bool, config: Config, readings: list[Reading]) -> float:
    m = Monitor(config=config, streaming=["spo2"], nibp=["nibp"])
    if reference:
        ref = engine(ReferenceEngine, config)
        m.alarms = ref  # type: ignore[assignment]
        # The old engine has no `due_by`: its exact next deadline serves.
        ref.due_by = lambda _now: ref.next_due()  # type: ignore[attr-defined]
    m.start_session(0.0, session_id="bench", route=Route.IV, user="bench", source="bench")
    m.mark_dose(0.0, user="bench", source="bench", reason="bench")
    advance, on_reading = m.advance, m.on_reading
    start = time.perf_counter()
    for r in readings:
        advance(r.t)
        on_reading(r)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = Config()
    rng = random.Random(1)
    for rate in (60, 1):
        minutes = args.minutes if rate > 1 else args.minutes * 20
        readings = stream(rate, minutes, rng)
        n = len(readings)
        best: dict[str, float] = {}
        outs: dict[str, list[Event]] = {}
        for _ in range(args.repeat):
            for name, cls in (("old", ReferenceEngine), ("new", AlarmEngine)):
                seconds, outs[name] = run_engine(engine(cls, config), readings)
                best[name] = min(best.get(name, seconds), seconds)
        same = "same events" if outs["old"] == outs["new"] else "EVENTS DIFFER"
        old_us, new_us = best["old"] / n * 1e6, best["new"] / n * 1e6
        print(
            f"engine, {rate} Hz, {n:,} readings ({minutes:g} min): old {old_us:.2f} "
            f"us/reading, new {new_us:.2f} us/reading ({old_us / new_us:.1f}x; {same})"
        )
        mon = {
            name: min(run_monitor(name == "old", config, readings) for _ in range(args.repeat))
            for name in ("old", "new")
        }
        print(f"monitor, {rate} Hz: with the old engine {mon['old'] / n * 1e6:.2f} us/reading, "
              f"with the new one {mon['new'] / n * 1e6:.2f} us/reading")  # fmt: skip


if __name__ == "__main__":
    main()
