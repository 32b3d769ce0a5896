"""Configuration: the shipped file is the defaults, and every bad file is named precisely."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sessiond.config import Config, ConfigError, load_config

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
