"""Scenario files: the built-in ones load, and mistakes name the file, the key and the problem."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import pytest

from sessiond.config import ConfigError
from sessiond.sim.scenario import (
    DEFAULT_DURATION_S,
    Desaturation,
    Garbage,
    SensorOff,
    builtin_scenario,
    builtin_scenarios,
    load_scenario,
)

if TYPE_CHECKING:
    from pathlib import Path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value.problems


def test_builtin_scenarios_are_listed() -> None:
    """Both shipped scenarios are found as package resources."""
    assert {"demo", "desaturation"} <= set(builtin_scenarios())


def test_demo_is_a_calm_three_hours_with_one_dip_and_one_probe_off() -> None:
    """demo.toml: 3 h, a ~60 s dip to 86 % around minute 12, 20 s sensor off around minute 20."""
    demo = builtin_scenario("demo")
    assert demo.duration_s == 3 * 3600
    dips = [e for e in demo.events if isinstance(e, Desaturation)]
    offs = [e for e in demo.events if isinstance(e, SensorOff)]
    assert len(dips) == 1
    assert len(offs) == 1
    (dip,), (off,) = dips, offs
    assert dip.spo2 == 86
    assert 11 * 60 <= dip.at_s + dip.duration_s / 2 <= 13 * 60
    assert 50 <= dip.duration_s - dip.ramp_s <= 80
    assert 19 * 60 <= off.at_s <= 21 * 60
    assert off.duration_s == 20


def test_desaturation_scenario_matches_what_the_tests_rely_on() -> None:
    """desaturation.toml: 400 s, dip to 86 % at 60 s for 60 s (5 s ramps), probe off 200-230 s."""
    scenario = builtin_scenario("desaturation")
    assert scenario.duration_s == 400
    assert scenario.events == (
        Desaturation(kind="desaturation", at_s=60, duration_s=60, spo2=86, ramp_s=5),
        SensorOff(kind="sensor_off", at_s=200, duration_s=30),
    )


def test_defaults_fill_everything_but_the_name(tmp_path: Path) -> None:
    """A file with only a name is a three-hour session of a healthy patient and no events."""
    scenario = load_scenario(write(tmp_path, 'name = "minimal"\n'))
    assert scenario.duration_s == DEFAULT_DURATION_S == 10800
    assert 97 <= scenario.patient.spo2 <= 98
    assert scenario.events == ()


def test_garbage_event(tmp_path: Path) -> None:
    """A garbage event carries its byte count; its duration defaults to a single burst."""
    path = write(
        tmp_path,
        """
        name = "noisy"
        [[events]]
        kind = "garbage"
        at_s = 12.5
        bytes = 40
        """,
    )
    assert load_scenario(path).events == (Garbage(kind="garbage", at_s=12.5, bytes=40),)


def test_event_errors_name_the_file_and_dotted_key(tmp_path: Path) -> None:
    """Unknown keys, missing keys and bad values are reported per key, all at once."""
    path = write(
        tmp_path,
        """
        name = "bad"
        colour = "blue"

        [patient]
        spo2 = 120

        [[events]]
        kind = "desaturation"
        at_s = 60
        duration_s = 60
        ramp = 5

        [[events]]
        kind = "sensor_off"
        at_s = -3
        duration_s = 10
        """,
    )
    assert problems_of(path) == [
        f"{path}: patient.spo2: Input should be less than or equal to 100 (got 120)",
        f"{path}: events.0.spo2: required key is missing",
        f"{path}: events.0.ramp: unknown key",
        f"{path}: events.1.at_s: Input should be greater than or equal to 0 (got -3)",
        f"{path}: colour: unknown key",
    ]


def test_unknown_or_missing_event_kind(tmp_path: Path) -> None:
    """The kind is checked first and named as the key at fault."""
    path = write(
        tmp_path,
        """
        name = "bad"
        [[events]]
        kind = "desat"
        at_s = 1
        [[events]]
        at_s = 2
        """,
    )
    assert problems_of(path) == [
        f"{path}: events.0.kind: must be one of desaturation, sensor_off, garbage (got 'desat')",
        f"{path}: events.1.kind: required key is missing",
    ]


def test_ramps_must_fit_the_window(tmp_path: Path) -> None:
    """Two ramps longer than the desaturation window are refused."""
    path = write(
        tmp_path,
        """
        name = "bad"
        [[events]]
        kind = "desaturation"
        at_s = 10
        duration_s = 10
        spo2 = 85
        ramp_s = 6
        """,
    )
    assert problems_of(path) == [
        f"{path}: events.0.ramp_s: both ramps must fit in duration_s (10 s) (got 6)"
    ]


def test_events_after_the_end_are_refused(tmp_path: Path) -> None:
    """An event that would never happen is an error, not silently skipped."""
    path = write(
        tmp_path,
        """
        name = "bad"
        duration_s = 100
        [[events]]
        kind = "sensor_off"
        at_s = 100
        duration_s = 5
        """,
    )
    assert problems_of(path) == [
        f"{path}: events.0.at_s: after the end of the scenario (duration_s = 100)"
    ]


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    """A missing file and broken TOML give one line naming the file."""
    missing = tmp_path / "nope.toml"
    (problem,) = problems_of(missing)
    assert problem.startswith(f"{missing}: cannot read: ")
    broken = write(tmp_path, "name = \n")
    (problem,) = problems_of(broken)
    assert problem.startswith(f"{broken}: not valid TOML: ")


def test_unknown_builtin_scenario() -> None:
    """Asking for a scenario that is not shipped lists the ones that are."""
    with pytest.raises(ConfigError, match="demo, desaturation"):
        builtin_scenario("../config")
