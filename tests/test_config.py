"""Configuration: the shipped file is the defaults, and every bad file is named precisely."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sessiond.config import (
    AlarmsConfig,
    Config,
    ConfigError,
    DeviceConfig,
    LimitAlarmConfig,
    LimitLevel,
    NibpConfig,
    RouteTimeline,
    load_config,
    parse_config,
)
from sessiond.room.music import MusicConfig

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "sessiond.toml"


def test_shipped_config_documents_exactly_the_defaults():
    assert load_config(SHIPPED) == Config()


def _keys(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix}
    out: set[str] = set()
    for key, value in data.items():
        if value is not None:  # unset optional keys are shown commented out
            out |= _keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


def test_shipped_config_spells_out_every_key():
    """A clinic admin reads every setting in the shipped file, not only those that differ."""
    with SHIPPED.open("rb") as f:
        shipped = tomllib.load(f)
    assert _keys(shipped) == _keys(Config().model_dump(mode="json"))


def test_no_file_means_the_embedded_defaults():
    config = load_config(None)
    assert config.console.host == "127.0.0.1"
    assert config.mqtt.enabled is False
    assert config.alarms.spo2_low.medium is not None
    assert config.alarms.spo2_low.medium.limit == 90


@pytest.mark.parametrize(("text", "expected"), [
    ("[alarms.spo2_low]\nmedum = { limit = 90 }\n", "alarms.spo2_low.medum: unknown key"),
    ("[alarms.spo2_low.medium]\nlimit = 'ninety'\n", "alarms.spo2_low.medium.limit:"),
    ("[alarms.spo2_low.medium]\nlimit = 90\ndelay_s = -1\n",
     "alarms.spo2_low.medium.delay_s: Input should be greater than or equal to 0"),
    ("[console]\nport = 70000\n", "console.port:"),
    ("[timeline.iv]\nonset_min = 60\neffect_end_min = 30\n",
     "timeline.iv.effect_end_min: Value error, must be after onset_min"),
    ("[devices.spo2]\ndecoder = 'nonin-df99'\n", "devices.spo2.decoder:"),
    ("[room]\nid = 'Mrs Smith'\n", "room.id:"),
    ("[mqtt\n", "not valid TOML"),
])  # fmt: skip
def test_bad_config_names_file_key_and_problem(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: ")
    assert expected in problem


def test_every_problem_is_reported(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[console]\nport = 'x'\nhots = '1'\n[records]\npaht = 'a'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    keys = sorted(p.split(": ")[1] for p in info.value.problems)
    assert keys == ["console.hots", "console.port", "records.paht"]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def sessiond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessiond", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_check_config_command(tmp_path):
    ok = sessiond("check-config", str(SHIPPED))
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[alarms.spo2_low]\nmedium = { limit = 90, dealy_s = 15 }\n")
    result = sessiond("check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{bad}: alarms.spo2_low.medium.dealy_s: unknown key"


def test_run_without_device_paths_is_a_config_error(tmp_path):
    cfg = tmp_path / "room.toml"
    cfg.write_text("[room]\nid = 'room-2'\n")
    result = sessiond("run", "--config", str(cfg))
    assert result.returncode == 2
    assert f"{cfg}: devices.spo2.path: required" in result.stderr


def test_version_and_help():
    result = sessiond("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("sessiond ")
    for command in ("demo", "run", "sim", "replay", "check-config"):
        result = sessiond(command, "--help")
        assert result.returncode == 0, command
        assert "usage: sessiond " + command in result.stdout


# --- configuration that would silently weaken an alarm is refused ---------------------------

PW = "pbkdf2_sha256$1000$" + "ab" * 16 + "$" + "cd" * 32


@pytest.mark.parametrize(("text", "key", "expected"), [
    # numbers that are not numbers
    ("[alarms.spo2_low.medium]\nlimit = nan\n", "alarms.spo2_low.medium.limit", "finite"),
    ("[alarms.spo2_low]\nhysteresis = inf\n", "alarms.spo2_low.hysteresis", "finite"),
    ("[alarms.pr_high]\nescalate_after_s = inf\n", "alarms.pr_high.escalate_after_s", "finite"),
    ("[alarms.audio]\npause_s = nan\n", "alarms.audio.pause_s", "finite"),
    # limits outside what the value can be
    ("[alarms.spo2_low.medium]\nlimit = 200\n", "alarms.spo2_low.medium.limit", "50-100 %"),
    ("[alarms.spo2_low.high]\nlimit = -85\n", "alarms.spo2_low.high.limit", "50-100 %"),
    ("[alarms.pr_low.medium]\nlimit = -5\n", "alarms.pr_low.medium.limit", "20-250 bpm"),
    ("[alarms.pr_high.high]\nlimit = 400\n", "alarms.pr_high.high.limit", "20-250 bpm"),
    ("[alarms.bp_low.high]\nlimit = 0\n", "alarms.bp_low.high.limit", "40-300 mmHg"),
    ("[alarms.bp_high]\nmedium_sys_mmhg = 1000\n", "alarms.bp_high.medium_sys_mmhg",
     "less than or equal to 300"),
    ("[alarms.dose_gate]\nlow_dia_mmhg = -90\n", "alarms.dose_gate.low_dia_mmhg",
     "greater than or equal to 40"),
    ("[alarms.bp_rise]\nsys_rise_mmhg = 0\n", "alarms.bp_rise.sys_rise_mmhg", "greater than 0"),
    ("[alarms.spo2_low]\nhysteresis = 30\n", "alarms.spo2_low.hysteresis", "at most 5 %"),
    ("[alarms.bp_high]\nhysteresis_mmhg = 100\n", "alarms.bp_high.hysteresis_mmhg",
     "less than or equal to 20"),
    ("[alarms.spo2_low.medium]\ndelay_s = 1e6\n", "alarms.spo2_low.medium.delay_s",
     "less than or equal to 120"),
    ("[alarms.sensor_off]\ndelay_s = 3600\n", "alarms.sensor_off.delay_s",
     "less than or equal to 120"),
    ("[nibp]\ncommand_timeout_s = 1e9\n", "nibp.command_timeout_s", "less than or equal to 30"),
    ("[nibp]\nonset_interval_min = 600\n", "nibp.onset_interval_min", "less than or equal to 60"),
    ("[discharge]\nspo2_min_pct = 150\n", "discharge.spo2_min_pct", "less than or equal to 100"),
    ("[discharge]\nwithin_baseline_pct = 1000\n", "discharge.within_baseline_pct",
     "less than or equal to 50"),
    ("[scenes.alarm]\nfade_s = 600\n", "scenes.alarm.fade_s", "less than or equal to 2"),
    # levels in the wrong order
    ("[alarms.spo2_low]\nmedium = { limit = 80 }\nhigh = { limit = 90 }\n",
     "alarms.spo2_low.high.limit", "must be below medium.limit (80)"),
    ("[alarms.spo2_low.medium]\nlimit = 85\n", "alarms.spo2_low.high.limit",
     "must be below medium.limit (85)"),
    ("[alarms.pr_high]\nmedium = { limit = 150 }\nhigh = { limit = 140 }\n",
     "alarms.pr_high.high.limit", "must be above medium.limit (150)"),
    ("[alarms.pr_low.high]\nlimit = 55\n", "alarms.pr_low.high.limit",
     "must be below medium.limit (50)"),
    ("[alarms.bp_low.medium]\nlimit = 70\n", "alarms.bp_low.high.limit",
     "must be below medium.limit (70)"),
    ("[alarms.bp_high]\nmedium_sys_mmhg = 200\nhigh_sys_mmhg = 180\n",
     "alarms.bp_high.high_sys_mmhg", "must be above medium_sys_mmhg (200)"),
    ("[alarms.bp_high]\nmedium_dia_mmhg = 115\n", "alarms.bp_high.high_dia_mmhg",
     "must be above medium_dia_mmhg (115)"),
    ("[alarms.bp_high]\ncritical_sys_mmhg = 170\n", "alarms.bp_high.critical_sys_mmhg",
     "must be at least high_sys_mmhg (180)"),
    ("[alarms.bp_high]\ncritical_dia_mmhg = 100\n", "alarms.bp_high.critical_dia_mmhg",
     "must be at least high_dia_mmhg (110)"),
    ("[alarms.dose_gate]\nlow_sys_mmhg = 190\n", "alarms.dose_gate.high_sys_mmhg",
     "must be above low_sys_mmhg (190)"),
    ("[alarms.dose_gate]\nhigh_dia_mmhg = 90\n", "alarms.dose_gate.high_dia_mmhg",
     "must be above low_dia_mmhg (90)"),
    ("[alarms.device_lost]\nhigh_after_s = 3\n", "alarms.device_lost.high_after_s",
     "must be at least medium_after_s (5)"),
    ("[alarms.nibp_error]\nescalated_priority = 'low'\npriority = 'medium'\n",
     "alarms.nibp_error.escalated_priority", "must not be below priority"),
    ("[scenes.alarm]\npriorities = ['medium']\n", "scenes.alarm.priorities", "must include 'high'"),
    # TOML types are kept, not converted
    ("[console]\nport = '8080'\n", "console.port", "valid integer"),
    ("[mqtt]\nport = '1883'\n", "mqtt.port", "valid integer"),
    ("[mqtt]\nenabled = 1\n", "mqtt.enabled", "valid boolean"),
    ("[alarms.spo2_low]\nenabled = 'yes'\n", "alarms.spo2_low.enabled", "valid boolean"),
    ("[alarms.spo2_low.medium]\nlimit = '88'\n", "alarms.spo2_low.medium.limit", "valid number"),
    ("[alarms.bp_high]\nhigh_confirmations = 2.0\n", "alarms.bp_high.high_confirmations",
     "valid integer"),
    ("[scenes.onset]\ncolour_temp_k = 2400.5\n", "scenes.onset.colour_temp_k", "valid integer"),
    ("[records]\npath = 2026-11-22\n", "records.path", "a date or time is not a valid value"),
    # console password hashes that sign-in would refuse
    ("[console.users.ana]\npassword_hash = '" + PW.replace("$1000$", "$0$") + "'\n",
     "console.users.ana.password_hash", "iterations must be a whole number in 1..10000000"),
    ("[console.users.ana]\npassword_hash = '" + PW.replace("$1000$", "$99999999999$") + "'\n",
     "console.users.ana.password_hash", "iterations must be a whole number in 1..10000000"),
    ("[console.users.ana]\npassword_hash = '" + PW.replace("$abab", "$bab", 1) + "'\n",
     "console.users.ana.password_hash", "must be hex, two digits a byte"),
    ("[console.users.ana]\npassword_hash = 'pbkdf2_sha256$1000$$cdcd'\n",
     "console.users.ana.password_hash", "should match pattern"),
])  # fmt: skip
def test_weakening_config_is_refused_naming_the_key(tmp_path, text, key, expected):
    path = tmp_path / "weak.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: {key}: "), problem
    assert expected in problem


def test_a_good_password_hash_loads(tmp_path):
    path = tmp_path / "users.toml"
    path.write_text(f"[console.users.ana]\npassword_hash = '{PW}'\n")
    assert load_config(path).console.users["ana"].password_hash == PW


def test_a_partial_table_keeps_the_defaults_it_does_not_name(tmp_path):
    """DESIGN §12: every key has a default, a table included; naming one key changes only it."""
    path = tmp_path / "partial.toml"
    path.write_text(
        "[alarms.spo2_low.medium]\nlimit = 88\n"
        "[alarms.pr_high]\nhigh = { limit = 150 }\n"
        "[alarms.bp_low.high]\nlimit = 75\n"
        "[scenes.baseline]\nvolume_pct = 20\n"
        "[timeline.oral]\nonset_min = 90\n"
        "[devices.nibp]\npath = '/dev/ttyUSB1'\n"
    )
    config = load_config(path)
    defaults = Config()
    alarms = config.alarms
    assert alarms.spo2_low.medium == LimitLevel(limit=88, delay_s=15)
    assert alarms.spo2_low.high == defaults.alarms.spo2_low.high
    assert alarms.spo2_low.hysteresis == 1
    assert alarms.pr_high.high == LimitLevel(limit=150, delay_s=10)
    assert alarms.pr_high.medium == defaults.alarms.pr_high.medium
    assert alarms.bp_low.high == LimitLevel(limit=75)
    assert config.scenes.baseline == defaults.scenes.baseline.model_copy(update={"volume_pct": 20})
    assert config.timeline.oral == RouteTimeline(onset_min=90, effect_end_min=240,
                                                 discharge_after_min=240)  # fmt: skip
    # A mapping of named entries holds the file's entries, each over its default entry.
    nibp = DeviceConfig(path="/dev/ttyUSB1", decoder="suntech-advantage")
    assert config.devices == {"nibp": nibp}


def test_high_level_table_keeps_its_latch(tmp_path):
    path = tmp_path / "high.toml"
    path.write_text("[alarms.spo2_low.high]\nlimit = 84\n")
    high = load_config(path).alarms.spo2_low.high
    assert high == LimitLevel(limit=84, delay_s=0, latched=True)


def test_toml_int_is_a_float():
    config = parse_config({"alarms": {"spo2_low": {"medium": {"limit": 89}}}}, source="test")
    assert config.alarms.spo2_low.medium == LimitLevel(limit=89.0, delay_s=15)
    assert isinstance(config.alarms.spo2_low.medium.limit, float)


def test_embedded_defaults_pass_the_loader():
    """The defaults themselves pass every check a file does, strict types included."""
    assert parse_config({}, source="defaults") == Config()


def test_bp_conditions_clear_after_a_hold():
    """DESIGN §5: BP conditions clear when the hysteresis held 5 s."""
    alarms = Config().alarms
    assert alarms.bp_low.clear_delay_s == 5
    assert alarms.bp_high.clear_delay_s == 5
    assert alarms.bp_rise.clear_delay_s == 5
    assert alarms.dose_gate.clear_delay_s == 5


def test_models_built_in_code_take_python_values_and_checks():
    """Tests and code build models with keywords: lists and ints convert, the checks hold."""
    alarm = LimitAlarmConfig(medium=LimitLevel(limit=90, delay_s=15),
                             high=LimitLevel(limit=85, latched=True))  # fmt: skip
    assert AlarmsConfig(spo2_low=alarm).spo2_low is alarm
    assert NibpConfig(command_timeout_s=0.5).command_timeout_s == 0.5
    assert MusicConfig.model_validate({"vlc_args": ["--quiet"]}).vlc_args == ("--quiet",)
    assert alarm.medium is not None
    assert type(alarm.medium.limit) is float
    # The session's settings are dataclasses that check themselves (the monitor loads without
    # pydantic): a bad one raises ValueError, as pydantic's ValidationError is one.
    inverted = LimitAlarmConfig(medium=LimitLevel(limit=80), high=LimitLevel(limit=90))
    with pytest.raises(ValueError, match=r"must be below medium\.limit"):
        AlarmsConfig(spo2_low=inverted)
    with pytest.raises(ValueError, match="finite"):
        LimitLevel(limit=float("nan"))
    with pytest.raises(ValueError, match="less than or equal to 120"):
        LimitLevel(limit=90, delay_s=121)


def test_check_config_reports_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "[alarms.spo2_low]\nmedium = { limit = 80 }\nhigh = { limit = 90 }\n"
        "[alarms.pr_high.medium]\nlimit = nan\n"
        "[mqtt]\nenabled = 'yes'\n"
    )
    result = sessiond("check-config", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert sorted(result.stderr.splitlines()) == [
        f"{bad}: alarms.pr_high.medium.limit: Input should be a finite number (got nan)",
        (
            f"{bad}: alarms.spo2_low.high.limit: must be below medium.limit (80) for an alarm "
            "on a low value (got 90)"
        ),
        f"{bad}: mqtt.enabled: Input should be a valid boolean (got 'yes')",
    ]
