"""Captures of the simulator's scenarios, replayed: the alarms each scenario says, and no others.

The simulator plays each shipped scenario onto real pseudo-terminals at high speed and writes
a capture; `replay` runs it through the daemon's decoders, timeline and alarm engine.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from sessiond.config import Config
from sessiond.devices import make_decoder
from sessiond.devices.nonin import NoninDf2Decoder, NoninDf7Decoder
from sessiond.model import Reading
from sessiond.records import replay as replay_module
from sessiond.records.capture import CaptureReader
from sessiond.records.replay import replay
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import run_sim

if TYPE_CHECKING:
    from pathlib import Path

    from sessiond.devices.decoder import Arrivals

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


# --- A Nonin binary's Readings on change: the same alarms as a Reading per packet -------------


def _every_packet(  # noqa: PLR0917  (`_emit_stretches`'s signature)
    dec: NoninDf7Decoder | NoninDf2Decoder,
    bounds: list[int],
    keys: list[bytes],
    s: int,
    clock: Arrivals,
    out: list[Reading],
) -> None:
    """A Reading for every packet (the decoders' output before DESIGN §6's rule)."""
    times = pieces = None
    if clock.times is not None:
        times, pieces = clock.times_of(s, bounds[-1], dec._size)
    for i, key in enumerate(keys):
        spo2, pr, pi, flags = dec._values(key)
        for a in range(bounds[i], bounds[i + 1]):
            t = clock.t
            if times is not None and pieces is not None:
                t = times[a]
                clock.pieces.append(pieces[a])
            out.append(Reading(t=t, device=dec.device, spo2=spo2, pr=pr, pi=pi, flags=flags))


class EveryPacketDf7(NoninDf7Decoder):
    _emit_stretches = _every_packet


class EveryPacketDf2(NoninDf2Decoder):
    _emit_stretches = _every_packet


def as_df2(capture: str) -> str:
    """The same capture with every DF7 frame of port `spo2` as a DF2 frame (the same length,
    so the same lines): `[S, P_MSB, P_LSB, V, C]` → `[01, S, P_MSB, V, C']`."""
    lines = capture.splitlines(keepends=True)
    data = [i for i, line in enumerate(lines) if " spo2 < " in line]
    stream = bytearray(b"".join(bytes.fromhex(lines[i].split()[3]) for i in data))
    f = np.frombuffer(bytes(stream[: len(stream) // 5 * 5]), dtype=np.uint8).reshape(-1, 5)
    df2 = np.stack([np.ones(len(f), dtype=np.uint8), f[:, 0], f[:, 1], f[:, 3]], axis=1)
    frames = np.concatenate([df2, (df2.sum(axis=1, dtype=np.uint32) & 0xFF)[:, None]], axis=1)
    stream[: len(f) * 5] = frames.astype(np.uint8).tobytes()
    at = 0
    for i in data:
        t, port, direction, hexed = lines[i].split()
        n = len(hexed) // 2
        lines[i] = f"{t} {port} {direction} {stream[at : at + n].hex()}\n"
        at += n
    return "".join(lines).replace("# port spo2 nonin-df7", "# port spo2 nonin-df2")


NONIN_CASES = [
    ("desaturation", None, None),
    ("bradycardia", None, None),
    ("motion_artifact", None, None),
    ("low_perfusion", None, None),
    ("garbage", None, None),
    ("cable_pull", 120.0, 60.0),
]


@pytest.mark.parametrize(("name", "dose_at", "nibp_every"), NONIN_CASES,
                         ids=[c[0] for c in NONIN_CASES])  # fmt: skip
async def test_nonin_readings_on_change_raise_the_alarms_of_a_reading_per_packet(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    dose_at: float | None,
    nibp_every: float | None,
) -> None:
    """A scenario's Nonin capture (DF7, and the same frames as DF2), replayed with Readings on
    change and once a second, gives every phase, alarm, BP request and count that a Reading
    per packet gives: the repeats reach the monitor as frames (DESIGN §6)."""
    scenario = builtin_scenario(name)
    capture = tmp_path / f"{name}.cap"
    devices = {"spo2": "nonin-df7", "nibp": "suntech-advantage"}
    await run_sim(scenario=scenario, speed=2000, devices=devices, capture=capture,
                  nibp_every_s=nibp_every, out=io.StringIO())  # fmt: skip
    df2 = tmp_path / f"{name}-df2.cap"
    df2.write_text(as_df2(capture.read_text(encoding="utf-8")), encoding="utf-8")

    def events(path: Path) -> tuple[list[str], list[str]]:
        out: list[str] = []
        with path.open(encoding="utf-8") as f:
            replay(CaptureReader(f), config=Config(), route=scenario.route, dose_at=dose_at,
                   readings=True, write=out.append)  # fmt: skip
        readings = [line for line in out if '"type": "reading"' in line]
        return [line for line in out if '"type": "reading"' not in line], readings

    make = make_decoder
    every = {"nonin-df7": EveryPacketDf7, "nonin-df2": EveryPacketDf2}
    for path in (capture, df2):
        on_change, readings = events(path)
        with monkeypatch.context() as m:
            m.setattr(replay_module, "make_decoder",
                      lambda protocol, *, device: every[protocol](device=device)
                      if protocol in every else make(protocol, device=device))  # fmt: skip
            per_packet, all_readings = events(path)
        assert on_change == per_packet
        summary = json.loads(on_change[-1])
        assert summary["readings"] == len(all_readings) > 2 * len(readings)
    assert any('"type": "alarm"' in line for line in on_change) or name == "garbage"
