"""Scenario files: the built-in ones load, and mistakes name the file, the key and the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sessiond.config import ConfigError
from sessiond.model import Route
from sessiond.sim.scenario import (
    DEFAULT_DURATION_S,
    EVENT_KINDS,
    BpFailure,
    Bradycardia,
    CablePull,
    Desaturation,
    Garbage,
    HypertensiveSurge,
    LowPerfusion,
    MotionArtifact,
    SensorOff,
    Tachycardia,
    builtin_scenario,
    builtin_scenarios,
    find_scenario,
    load_scenario,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value.problems


SHIPPED = [
    "bp_failure",
    "bradycardia",
    "cable_pull",
    "demo",
    "desaturation",
    "garbage",
    "hypertensive",
    "low_perfusion",
    "motion_artifact",
    "tachycardia",
]


def test_builtin_scenarios_are_listed() -> None:
    """The shipped scenarios, one per failure kind, are found as package resources."""
    assert set(SHIPPED) <= set(builtin_scenarios())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load_and_say_what_to_expect(name: str) -> None:
    """Each file validates and its comments name the alarms to raise and not to raise."""
    scenario = builtin_scenario(name)
    assert scenario.name == name
    assert scenario.description
    path = Path(__file__).parent.parent / "sessiond" / "sim" / "scenarios" / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    assert "# Expected alarms" in text
    assert "# Must not raise:" in text


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("hypertensive", HypertensiveSurge),
        ("bradycardia", Bradycardia),
        ("tachycardia", Tachycardia),
        ("motion_artifact", MotionArtifact),
        ("low_perfusion", LowPerfusion),
        ("cable_pull", CablePull),
        ("bp_failure", BpFailure),
        ("garbage", Garbage),
        ("desaturation", Desaturation),
    ],
)
def test_one_scenario_per_failure_kind_short_enough_to_replay(name: str, kind: type) -> None:
    """Each failure scenario plays its kind within an hour (most within 30 min)."""
    scenario = builtin_scenario(name)
    assert any(isinstance(e, kind) for e in scenario.events)
    assert scenario.duration_s <= 3600


def test_find_scenario_takes_a_file_or_a_builtin_name(tmp_path: Path) -> None:
    """`--scenario cable_pull` is the shipped file; a path is a path."""
    assert find_scenario("cable_pull") == builtin_scenario("cable_pull")
    path = write(tmp_path, 'name = "mine"\n')
    assert find_scenario(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="cannot read"):
        find_scenario(str(tmp_path / "nope.toml"))


def test_demo_is_an_iv_session_with_one_dip_and_one_probe_off() -> None:
    """demo.toml: 3 h IV, dose at 10 min, a ~60 s dip to 87 % at minute 12, probe off at 20."""
    demo = builtin_scenario("demo")
    assert demo.duration_s == 3 * 3600
    assert demo.route is Route.IV
    assert demo.dose_at_s == 600
    dips = [e for e in demo.events if isinstance(e, Desaturation)]
    offs = [e for e in demo.events if isinstance(e, SensorOff)]
    assert len(dips) == 1
    assert len(offs) == 1
    (dip,), (off,) = dips, offs
    assert dip.spo2 == 87  # held for minutes in `sessiond demo`: clear of the 85 % high limit
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
    kinds = ", ".join(EVENT_KINDS)
    assert problems_of(path) == [
        f"{path}: events.0.kind: must be one of {kinds} (got 'desat')",
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


def test_new_event_kinds_and_session_keys(tmp_path: Path) -> None:
    """Route, dose time, BP, devices and every new event kind parse with their defaults."""
    path = write(
        tmp_path,
        """
        name = "all"
        duration_s = 1800
        route = "intranasal"
        dose_at_s = 300
        [patient]
        sys = 130
        dia = 85
        ketamine_response = 1.5
        [devices]
        spo2 = "nonin-df7"
        cuff = "suntech-advantage"
        [[events]]
        kind = "hypertensive_surge"
        at_s = 600
        duration_s = 600
        sys = 185
        dia = 112
        [[events]]
        kind = "bradycardia"
        at_s = 100
        duration_s = 100
        pr = 42
        [[events]]
        kind = "tachycardia"
        at_s = 100
        duration_s = 100
        pr = 130
        [[events]]
        kind = "low_perfusion"
        at_s = 100
        duration_s = 100
        [[events]]
        kind = "motion_artifact"
        at_s = 100
        duration_s = 30
        [[events]]
        kind = "cable_pull"
        at_s = 100
        duration_s = 30
        port = "cuff"
        [[events]]
        kind = "bp_failure"
        at_s = 100
        answer = "error"
        error = 0x57
        [[events]]
        kind = "bp_failure"
        at_s = 100
        count = 2
        answer = "none"
        """,
    )
    scenario = load_scenario(path)
    assert scenario.route is Route.INTRANASAL
    assert scenario.dose_at_s == 300
    assert (scenario.patient.sys, scenario.patient.dia) == (130, 85)
    assert scenario.devices == {"spo2": "nonin-df7", "cuff": "suntech-advantage"}
    surge, brady, tachy, low, motion, pull, error, silent = scenario.events
    assert surge == HypertensiveSurge(
        kind="hypertensive_surge", at_s=600, duration_s=600, sys=185, dia=112, ramp_s=120
    )
    assert brady == Bradycardia(kind="bradycardia", at_s=100, duration_s=100, pr=42, ramp_s=30)
    assert tachy == Tachycardia(kind="tachycardia", at_s=100, duration_s=100, pr=130, ramp_s=30)
    assert low == LowPerfusion(kind="low_perfusion", at_s=100, duration_s=100, pi=0.3)
    assert motion == MotionArtifact(kind="motion_artifact", at_s=100, duration_s=30)
    assert pull == CablePull(kind="cable_pull", at_s=100, duration_s=30, port="cuff")
    assert error == BpFailure(kind="bp_failure", at_s=100, count=1, answer="error", error=0x57)
    assert silent == BpFailure(kind="bp_failure", at_s=100, count=2, answer="none")
    assert isinstance(error, BpFailure)
    assert isinstance(silent, BpFailure)
    assert (error.code, silent.code) == (0x57, 0x02)


def test_new_event_mistakes_name_the_event_and_key(tmp_path: Path) -> None:
    """Values that make no clinical or protocol sense are refused, each named by its key."""
    path = write(
        tmp_path,
        """
        name = "bad"
        duration_s = 600
        dose_at_s = 600
        route = "rectal"
        [patient]
        sys = 80
        dia = 90
        [devices]
        spo2 = "nellcor"
        [[events]]
        kind = "hypertensive_surge"
        at_s = 10
        duration_s = 300
        sys = 150
        dia = 160
        [[events]]
        kind = "bradycardia"
        at_s = 10
        duration_s = 100
        pr = 65
        [[events]]
        kind = "tachycardia"
        at_s = 10
        duration_s = 100
        pr = 95
        [[events]]
        kind = "bp_failure"
        at_s = 10
        answer = "none"
        error = 2
        [[events]]
        kind = "bp_failure"
        at_s = 10
        error = 0x42
        [[events]]
        kind = "bp_failure"
        at_s = 10
        answer = "maybe"
        """,
    )
    problems = problems_of(path)
    assert problems[:3] == [
        f"{path}: route: Input should be 'iv', 'im', 'intranasal' or 'oral' (got 'rectal')",
        f"{path}: patient.dia: must be below sys (80 mmHg) (got 90)",
        (
            f"{path}: devices.spo2: Input should be 'masimo-ascii1', 'nonin-df7', 'contec-v7' "
            "or 'suntech-advantage' (got 'nellcor')"
        ),
    ]
    assert problems[3:] == [
        f"{path}: events.0.dia: must be below sys (150 mmHg) (got 160)",
        f"{path}: events.1.pr: Input should be less than 60 (got 65)",
        f"{path}: events.2.pr: Input should be greater than 100 (got 95)",
        f"{path}: events.3.error: only with answer = 'error' (got 2)",
        (
            f"{path}: events.4.error: not a SunTech error code (known: 0x01, 0x02, 0x03, "
            "0x04, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x61, 0x63) (got 66)"
        ),
        f"{path}: events.5.answer: Input should be 'error', 'none' or 'ack_only' (got 'maybe')",
    ]


def test_timing_and_port_mistakes(tmp_path: Path) -> None:
    """A dose after the end, overlapping pulls and ports the scenario does not serve."""
    path = write(
        tmp_path,
        """
        name = "bad"
        duration_s = 600
        dose_at_s = 700
        [devices]
        spo2 = "masimo-ascii1"
        [[events]]
        kind = "cable_pull"
        at_s = 100
        duration_s = 60
        [[events]]
        kind = "cable_pull"
        at_s = 130
        duration_s = 10
        [[events]]
        kind = "garbage"
        at_s = 10
        bytes = 5
        port = "nibp"
        """,
    )
    assert problems_of(path) == [
        f"{path}: dose_at_s: after the end of the scenario (duration_s = 600)",
        f"{path}: events.1.at_s: the spo2 cable is still out then",
        f"{path}: events.2.port: no such device 'nibp' (devices: spo2)",
    ]


def test_a_silent_device_names_a_served_port(tmp_path: Path) -> None:
    """`silence` (a device that stops sending, its port open) is checked like a cable pull."""
    path = write(
        tmp_path,
        """
        name = "quiet"
        [devices]
        spo2 = "masimo-ascii1"
        [[events]]
        kind = "silence"
        at_s = 100
        duration_s = 40
        [[events]]
        kind = "silence"
        at_s = 10
        duration_s = 5
        port = "nibp"
        """,
    )
    assert problems_of(path) == [f"{path}: events.1.port: no such device 'nibp' (devices: spo2)"]
