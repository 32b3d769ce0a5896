"""Each command imports only what it uses (issue 13): `--help` the command line alone,
`replay` the decoders, the monitor and its settings, without pydantic or any part of the
room, the console or the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from sessiond.config import Config
from sessiond.devices import PROTOCOLS, decoder_class
from sessiond.session.settings import SessionSettings

if TYPE_CHECKING:
    from pathlib import Path

HEAVY = ("pydantic", "numpy", "aiohttp", "aiomqtt", "vlc", "serial", "sessiond.config")
HELP_HEAVY = (*HEAVY, "asyncio", "importlib.metadata", "sessiond.session")
#: What `sessiond replay` must not load, besides `HEAVY`: the room, the console, the
#: simulator, the record store, the event loop and the version lookup.
NOT_FOR_REPLAY = (
    # numpy is the decoders' and the capture reader's bulk path: replay uses it.
    *(m for m in HEAVY if m != "numpy"),
    "pydantic_core",
    "paho",
    "serial_asyncio_fast",
    "sqlite3",
    "asyncio",
    "importlib.metadata",
    "sessiond.room",
    "sessiond.console",
    "sessiond.sim",
    "sessiond.app",
    "sessiond.records.store",
    "sessiond.devices.nonin",
    "sessiond.devices.link",
)


def _loaded(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (or modules under them) `sessiond ARGV` has imported when it ends."""
    code = (
        "import atexit, json, sys\n"
        f"names = {names!r}\n"
        "def report():\n"
        "    found = sorted(n for n in names if any(m == n or m.startswith(n + '.')\n"
        "                                           for m in list(sys.modules)))\n"
        "    print('LOADED', json.dumps(found), file=sys.stderr)\n"
        "atexit.register(report)\n"
        "from sessiond.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("LOADED ")]
    found: list[str] = json.loads(line.removeprefix("LOADED "))
    return found


def test_help_loads_none_of_the_heavy_modules() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from sessiond.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(sorted(m for m in {HELP_HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_version_is_looked_up_when_asked_for() -> None:
    code = "from sessiond.cli import main\nmain(['--version'])\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.startswith("sessiond ")


@pytest.mark.parametrize("protocol", ["masimo-ascii1", "contec-v7", "suntech-advantage"])
def test_replay_of_an_empty_capture_loads_only_what_it_runs(tmp_path: Path, protocol: str) -> None:
    capture = tmp_path / "empty.cap"
    capture.write_text(f"# sessiond-capture 1\n# port spo2 {protocol}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert _loaded(["replay", str(capture), "--out", str(out)], NOT_FOR_REPLAY) == []
    assert out.read_text(encoding="utf-8").splitlines()[-1].startswith('{"t": 0.0, "type": "s')


def test_replay_with_a_configuration_validates_it_with_pydantic(tmp_path: Path) -> None:
    """`--config` is validated as for every command; the room still stays out."""
    capture = tmp_path / "empty.cap"
    capture.write_text("# sessiond-capture 1\n# port spo2 masimo-ascii1\n", encoding="utf-8")
    config = tmp_path / "sessiond.toml"
    config.write_text("[alarms.spo2_low.medium]\nlimit = 88\n", encoding="utf-8")
    argv = ["replay", str(capture), "--config", str(config), "--out", str(tmp_path / "o")]
    room = ("sessiond.room.lights", "sessiond.room.mqtt", "sessiond.room.music")
    loaded = _loaded(argv, ("pydantic", "aiomqtt", "aiohttp", "vlc", *room))
    assert loaded == ["pydantic"]


def test_replay_defaults_are_the_configuration_defaults() -> None:
    """Replay without `--config` runs on exactly the session settings of `Config()`."""
    config, settings = Config(), SessionSettings()
    for name in ("alarms", "timeline", "nibp", "baseline", "discharge", "checklists"):
        assert getattr(settings, name) == getattr(config, name)


def test_every_protocol_names_its_decoder() -> None:
    for protocol in PROTOCOLS:
        assert decoder_class(protocol).protocol == protocol
