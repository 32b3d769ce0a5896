"""Captures of the simulator's scenarios, replayed: the alarms each scenario says, and no others.

The simulator plays each shipped scenario onto real pseudo-terminals at high speed and writes
a capture; `replay` runs it through the daemon's decoders, timeline and alarm engine.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import pytest

from sessiond.config import Config
from sessiond.records.capture import CaptureReader
from sessiond.records.replay import replay
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import run_sim

if TYPE_CHECKING:
    from pathlib import Path

OXIMETER = {"spo2": "masimo-ascii1"}
BOTH = {"spo2": "masimo-ascii1", "nibp": "suntech-advantage"}
# The BP scenarios without the oximeter: at this speed the simulator's BP host replies are
# stamped when they arrive, and a scheduling hiccup would show as an oximeter gap.
BP = {"nibp": "suntech-advantage"}

# scenario, devices, BP host period (s), dose (s), the expected alarm transitions
CASES: list[tuple[str, dict[str, str], float | None, float | None, list[tuple[Any, ...]]]] = [
    ("desaturation", OXIMETER, None, None, [
        (79, "spo2_low", "medium", "active"), (123, "spo2_low", "medium", "cleared"),
        (205, "sensor_off", "medium", "active"), (230, "sensor_off", "medium", "cleared"),
    ]),
    ("bradycardia", OXIMETER, None, None, [
        (275, "pr_low", "medium", "active"), (377, "pr_low", "medium", "cleared"),
        (690, "pr_low", "medium", "active"), (694, "pr_low", "high", "active"),
        (834, "pr_low", "high", "latched"),  # once PR is past 50 + 2 too: a latch hides nothing
    ]),
    ("tachycardia", OXIMETER, None, None, [
        (277, "pr_high", "medium", "active"), (372, "pr_high", "medium", "cleared"),
        (688, "pr_high", "medium", "active"), (697, "pr_high", "high", "active"),
        (821, "pr_high", "medium", "active"), (829, "pr_high", "medium", "cleared"),
    ]),
    # Artifact: physiological alarms neither raised nor cleared; only the long episode
    # outlasts signal_poor's 30 s.
    ("motion_artifact", {"spo2": "nonin-df7"}, None, None, [
        (450, "signal_poor", "low", "active"), (510, "signal_poor", "low", "cleared"),
    ]),
    ("low_perfusion", OXIMETER, None, None, [
        (535, "signal_poor", "low", "active"), (636, "signal_poor", "low", "cleared"),
    ]),
    ("garbage", BOTH, None, None, []),
    ("hypertensive", BP, 120, 300, [
        (998, "bp_high", "medium", "active"), (998, "bp_rise", "medium", "active"),
        # 157/100 at 1598 still holds the medium condition (DIA 100): active until 142/92
        # at 1714 has held 5 s; then the high latches and bp_rise clears.
        (1242, "bp_high", "high", "active"), (1719, "bp_high", "high", "latched"),
        (1719, "bp_rise", "medium", "cleared"),
    ]),
    # Replay sees the error codes in the results; the unanswered commands are the live
    # link's business (DESIGN §6), so the gap they leave makes the BP overdue.
    ("bp_failure", BP, 300, 300, [
        (634, "nibp_error", "low", "active"), (934, "nibp_error", "medium", "active"),
        (1234, "nibp_overdue", "medium", "active"), (1833, "nibp_error", "medium", "cleared"),
        (1833, "nibp_overdue", "medium", "cleared"),
    ]),
    # The response follows the infusion (peak at its stop); replay stops it at 3600.
    ("iv_infusion", BP, 120, 300, [
        (1238, "bp_high", "medium", "active"), (1358, "bp_rise", "medium", "active"),
        (2200, "bp_high", "high", "active"), (4723, "bp_high", "high", "latched"),
        (4723, "bp_rise", "medium", "cleared"),
    ]),
    ("cable_pull", BOTH, None, 120, [
        (244, "device_lost", "medium", "active"), (260, "device_lost", "medium", "cleared"),
        (484, "device_lost", "medium", "active"), (509, "device_lost", "high", "active"),
        (540, "device_lost", "high", "latched"),
    ]),
]  # fmt: skip


#: Scenarios whose dose starts an infusion: when replay stops it (`--infusion-end`).
INFUSION_END = {"iv_infusion": 3600.0}


@pytest.mark.parametrize(
    ("name", "devices", "nibp_every", "dose_at", "expected"), CASES, ids=[c[0] for c in CASES]
)
async def test_scenario_capture_replays_to_its_alarms(  # noqa: PLR0917 - parametrized
    tmp_path: Path,
    name: str,
    devices: dict[str, str],
    nibp_every: float | None,
    dose_at: float | None,
    expected: list[tuple[Any, ...]],
) -> None:
    scenario = builtin_scenario(name)
    capture = tmp_path / f"{name}.cap"
    await run_sim(scenario=scenario, speed=2000, devices=devices, capture=capture,
                  nibp_every_s=nibp_every, out=io.StringIO())  # fmt: skip
    lines: list[str] = []
    # A BP module is silent between readings: replay 10 s past the last one, so that its
    # clears, which hold 5 s after the reading (DESIGN §5), are inside the replay.
    end_at = scenario.duration_s + 10 if devices == BP else None
    infusion_end = INFUSION_END.get(name)
    with capture.open(encoding="utf-8") as f:
        summary = replay(CaptureReader(f), config=Config(), route=scenario.route,
                         dose_at=dose_at, infusion_end=infusion_end, end_at=end_at,
                         write=lines.append)  # fmt: skip
    events = [json.loads(line) for line in lines]
    if infusion_end is not None:
        prompts = [(e["t"], e["active"]) for e in events if e["type"] == "infusion_prompt"]
        assert prompts == [(2200.0, True), (infusion_end, False)]
    alarms = [(e["t"], e["id"], e["priority"], e["state"]) for e in events if e["type"] == "alarm"]
    assert [a[1:] for a in alarms] == [e[1:] for e in expected]
    # Deadlines fire at the time they are due; the model is seeded, so the times hold.
    for (t, *_), (want, *_) in zip(alarms, expected, strict=True):
        assert t == pytest.approx(want, abs=5)
    assert summary["frames_bad"] == 0
    if "spo2" in devices:
        per_second = 3 if devices["spo2"] == "nonin-df7" else 1  # DF7: 3 packets a second
        unplugged = sum(e.duration_s for e in scenario.events if e.kind == "cable_pull")
        assert summary["readings"] >= (scenario.duration_s - unplugged) * per_second
    if name == "garbage":
        assert summary["bytes_skipped"] > 0
