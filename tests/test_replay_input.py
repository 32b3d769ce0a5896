"""`sessiond replay` on bad input (DESIGN §6): exit 2, one line on stderr naming the line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from sessiond.cli import main
from sessiond.records.capture import CaptureReader, CaptureWriter, open_capture
from sessiond.sim.masimo import masimo_line

if TYPE_CHECKING:
    from pathlib import Path

HEAD = b"# sessiond-capture 1\n# port spo2 masimo-ascii1\n"
START = datetime(2026, 11, 22, 9, 0, 0)  # noqa: DTZ001

#: (capture bytes, the line stderr must name)
BAD_CAPTURES = {
    "time inf": (HEAD + b"0.1 spo2 < 30\ninf spo2 < 30\n", 4),
    "time nan": (HEAD + b"5.0 spo2 < 30\nnan spo2 < 30\n1.0 spo2 < 30\n", 4),
    "time too large": (HEAD + b"1e300 spo2 < 30\n", 3),
    "time goes back": (HEAD + b"5.0 spo2 < 30\n4.0 spo2 < 30\n", 4),
    "time negative": (HEAD + b"-1 spo2 < 30\n", 3),
    "time not a number": (HEAD + b"0.5s spo2 < 30\n", 3),
    "unknown decoder": (b"# sessiond-capture 1\n# port spo2 masimo-ascii9\n0.1 spo2 < 30\n", 2),
    "port line too short": (b"# sessiond-capture 1\n# port spo2\n0.1 spo2 < 30\n", 2),
    "duplicate port": (HEAD + b"# port spo2 nonin-df7\n0.1 spo2 < 30\n", 3),
    "no port line": (b"# sessiond-capture 1\n0.1 spo2 < 30\n", 2),
    "no version line": (b"# port spo2 masimo-ascii1\n0.1 spo2 < 30\n", 1),
    "not UTF-8 in data": (HEAD + b"0.1 spo2 < 30\n0.2 spo2 < 3\xff\n", 4),
    "not UTF-8 in header": (b"# sessiond-capture 1\n# caf\xe9\n# port spo2 nonin-df7\n", 2),
    "bad hex": (HEAD + b"0.1 spo2 < 3031\n0.2 spo2 < zz\n", 4),
    "odd hex": (HEAD + b"0.1 spo2 < 303\n", 3),
    "undeclared port": (HEAD + b"0.1 nibp < 30\n", 3),
    "too few fields": (HEAD + b"0.1 spo2 <\n", 3),
    "too many fields": (HEAD + b"0.1 spo2 < 30 31\n", 3),
    "bad direction": (HEAD + b"0.1 spo2 ? 30\n", 3),
}

#: Options that are not a finite number of seconds from the capture start.
BAD_OPTIONS = [
    ("--end-at", "inf"),
    ("--end-at", "nan"),
    ("--end-at", "1e400"),
    ("--end-at", "ten"),
    ("--dose-at", "nan"),
    ("--dose-at", "inf"),
    ("--dose-at", "-1"),
    ("--dose-at", "1e300"),
]


def good_capture(path: Path, *, seconds: int = 20) -> None:
    writer = CaptureWriter(path, {"spo2": "masimo-ascii1"})
    for s in range(seconds):
        data = masimo_line(device_time=START + timedelta(seconds=s), spo2=97, pr=72, pi=2.5,
                           exc=0x800)  # fmt: skip
        writer.write(s + 0.25, "spo2", "<", data)
    writer.close()


def replay_in_process(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["replay", *args])
    except SystemExit as exc:  # argparse's own exit
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def sessiond(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sessiond", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def strict_json(line: str) -> dict[str, object]:
    def refuse(constant: str) -> object:
        pytest.fail(f"{constant} in the JSON output: {line}")

    event = json.loads(line, parse_constant=refuse)
    assert isinstance(event, dict)
    return event


def assert_refused(code: int, out: str, err: str, *, naming: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert naming in err
    assert "Traceback" not in err
    # Events already written may stay; no summary claims the replay finished.
    assert all(strict_json(line)["type"] != "summary" for line in out.splitlines())


@pytest.mark.parametrize(("data", "lineno"), BAD_CAPTURES.values(), ids=BAD_CAPTURES.keys())
def test_bad_capture_exits_2_naming_its_line(tmp_path, capsys, data, lineno):
    cap = tmp_path / "bad.cap"
    cap.write_bytes(data)
    code, out, err = replay_in_process(capsys, str(cap))
    assert_refused(code, out, err, naming=f"{cap}: line {lineno}: ")


@pytest.mark.parametrize("name", ["time inf", "unknown decoder", "not UTF-8 in data"])
def test_bad_capture_through_the_command_line(tmp_path, name):
    data, lineno = BAD_CAPTURES[name]
    cap = tmp_path / "bad.cap"
    cap.write_bytes(data)
    result = sessiond("replay", str(cap))
    assert_refused(result.returncode, result.stdout, result.stderr, naming=f"line {lineno}: ")


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_time_options_must_be_finite_seconds(tmp_path, capsys, option, value):
    cap = tmp_path / "s.cap"
    good_capture(cap)
    code, out, err = replay_in_process(capsys, str(cap), f"{option}={value}")
    assert_refused(code, out, err, naming=f"argument {option}: ")
    assert out == ""


@pytest.mark.parametrize(("option", "value"), [("--end-at", "inf"), ("--dose-at", "nan")])
def test_time_options_through_the_command_line(tmp_path, option, value):
    cap = tmp_path / "s.cap"
    good_capture(cap)
    result = sessiond("replay", str(cap), option, value)
    assert_refused(result.returncode, result.stdout, result.stderr, naming=option)
    assert result.stdout == ""


def test_unwritable_out_is_one_line(tmp_path, capsys):
    cap = tmp_path / "s.cap"
    good_capture(cap)
    missing = tmp_path / "no-such-dir" / "out.jsonl"
    code, out, err = replay_in_process(capsys, str(cap), "--out", str(missing))
    assert_refused(code, out, err, naming=str(missing))


def test_capture_that_stops_mid_frame_replays(tmp_path, capsys):
    """A capture cut inside a device's frame is how recordings end, not a bad capture."""
    cap = tmp_path / "cut.cap"
    good_capture(cap, seconds=10)
    half = masimo_line(device_time=START, spo2=97, pr=72, pi=2.5, exc=0x800)[:25]
    with cap.open("a", encoding="utf-8") as f:
        f.write(f"10.250 spo2 < {half.hex()}\n")
    code, out, err = replay_in_process(capsys, str(cap), "--readings", "--end-at", "12.5")
    assert code == 0, err
    events = [strict_json(line) for line in out.splitlines()]
    assert events[-1] == {"t": 12.5, "type": "summary", "readings": 10, "frames_bad": 0,
                          "bytes_skipped": 0}  # fmt: skip


def test_not_utf8_names_its_line_far_into_the_file(tmp_path):
    """Decoding goes by lines, not by the chunks a text file is read in."""
    cap = tmp_path / "long.cap"
    cap.write_bytes(HEAD + b"".join(b"%d.0 spo2 < 3031\n" % s for s in range(2000))
                    + b"2000.0 spo2 < 30\xc3\n")  # fmt: skip
    with open_capture(cap) as stream, pytest.raises(ValueError, match="line 2003: not UTF-8"):
        list(CaptureReader(stream))
