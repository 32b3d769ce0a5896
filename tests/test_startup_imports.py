"""Each command imports only what it uses (issue 13): `--help` the command line alone,
`replay` the decoders, the monitor and its settings, without pydantic or any part of the
room, the console or the simulator; numpy only for the bulk paths (a capture's data lines,
a decoder fed a large buffer), never for an empty capture or a live link's reads."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from sessiond.clock import VirtualClock
from sessiond.config import Config
from sessiond.devices import PROTOCOLS, decoder_class
from sessiond.room.ambient import ensure_library
from sessiond.session.settings import SessionSettings
from sessiond.sim.devices import StreamingPlayer
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import Simulator
from tests.test_contec import legacy_packet
from tests.test_suntech import ACK_K, ACK_O, RESULT, cuff

if TYPE_CHECKING:
    from pathlib import Path

HEAVY = ("pydantic", "numpy", "aiohttp", "aiomqtt", "vlc", "serial", "sessiond.config")
HELP_HEAVY = (*HEAVY, "asyncio", "importlib.metadata", "sessiond.session")
#: What `sessiond replay` of an empty capture must not load, besides `HEAVY`: the room, the
#: console, the simulator, the record store, the event loop and the version lookup.
NOT_FOR_REPLAY = (
    *HEAVY,
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
#: Protocols checked to decode a live link's reads without numpy, with reads from
#: `_live_reads` (`nonin-df2` and `nonin-ascii` would need theirs there to join).
LIVE = ("contec-v7", "contec-legacy", "suntech-advantage", "masimo-ascii1", "nonin-df7")


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


@pytest.mark.parametrize(
    "protocol",
    [
        "masimo-ascii1",
        "nonin-df7",
        "nonin-ascii",
        "contec-v7",
        "contec-legacy",
        "suntech-advantage",
    ],
)
def test_replay_of_an_empty_capture_loads_only_what_it_runs(tmp_path: Path, protocol: str) -> None:
    """Nothing to decode: no numpy (the capture reader and the decoders load it for data)."""
    capture = tmp_path / "empty.cap"
    capture.write_text(f"# sessiond-capture 1\n# port spo2 {protocol}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    own = f"sessiond.devices.{protocol.partition('-')[0]}"  # its decoder's module, wanted here
    unwanted = tuple(m for m in NOT_FOR_REPLAY if m != own)
    assert _loaded(["replay", str(capture), "--out", str(out)], unwanted) == []
    assert out.read_text(encoding="utf-8").splitlines()[-1].startswith('{"t": 0.0, "type": "s')


def _live_reads(protocol: str, seconds: int = 5) -> list[bytes]:
    """What a serial link reads from a device of `protocol`: a packet, a line or a reply at a
    time (a Contec's USB link delivers its 60 packets a second one by one)."""
    if protocol == "contec-legacy":
        return [legacy_packet(spo2=95 + k % 3, pleth=k % 100) for k in range(60 * seconds)]
    if protocol == "suntech-advantage":
        return [ACK_O, *(cuff(mmhg) for mmhg in range(160, 60, -20)), ACK_K, RESULT]
    sim = Simulator(scenario=builtin_scenario("demo"), clock=VirtualClock(),  # type: ignore[arg-type]
                    devices={"spo2": protocol})  # fmt: skip
    player = sim.players["spo2"]
    assert isinstance(player, StreamingPlayer)
    chunks = player.render(0, seconds * player.chunks_per_s)
    if protocol == "contec-v7":
        stream = b"".join(chunks)
        return [stream[i : i + 9] for i in range(0, len(stream), 9)]
    return chunks


@pytest.mark.parametrize("protocol", LIVE)
def test_the_daemon_decodes_a_live_link_without_numpy(tmp_path: Path, protocol: str) -> None:
    """The daemon's modules, a decoder fed a read at a time, the waveform and the capture
    of what arrived (`run --capture`): numpy stays out of the live daemon."""
    reads = _live_reads(protocol)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import sessiond.app, sessiond.config\n"
        "from sessiond.devices import make_decoder\n"
        "from sessiond.devices.decoder import SendsWaveform\n"
        "from sessiond.records.capture import CaptureWriter\n"
        "protocol, capture, reads = json.load(sys.stdin)\n"
        "decoder = make_decoder(protocol, device='spo2')\n"
        "writer = CaptureWriter(Path(capture), {'spo2': protocol})\n"
        "readings = 0\n"
        "for k, data in enumerate(map(bytes.fromhex, reads)):\n"
        "    writer.write(k / 60, 'spo2', '<', data)\n"
        "    readings += len(decoder.feed(data, k / 60))\n"
        "    if isinstance(decoder, SendsWaveform):\n"
        "        decoder.waveform()\n"
        "writer.close()\n"
        "print(json.dumps([readings, decoder.frames_bad, 'numpy' in sys.modules]))\n"
    )
    request = json.dumps([protocol, str(tmp_path / "live.cap"), [r.hex() for r in reads]])
    done = subprocess.run([sys.executable, "-c", code], input=request, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    readings, frames_bad, numpy_loaded = json.loads(done.stdout)
    assert readings > 0
    assert frames_bad == 0
    assert not numpy_loaded


def test_the_room_sounds_without_numpy(tmp_path: Path) -> None:
    """The alarm bursts are synthesised with `math`; ambient tracks already written are
    checked from their headers: numpy only to render a missing track."""
    ensure_library(tmp_path, duration_s=0.5)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sessiond.room.alarm_tone import BURSTS, burst_wav\n"
        "from sessiond.room.ambient import ensure_library\n"
        "sizes = [len(burst_wav(burst)) for burst in BURSTS.values()]\n"
        f"written = ensure_library(Path({str(tmp_path)!r}), duration_s=0.5)\n"
        "print(min(sizes) > 1000, written, 'numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.split() == ["True", "[]", "False"]


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
