"""sessiond as a whole program against the parsers people use today, on the same bytes.

    .venv/bin/python bench/whole_program.py [--hours 3] [--masimo-hours 24] [--dir DIR]
                                            [--sessiond CMD] [--runs 3] [--as-is]

Builds one capture per protocol from the simulator's encoders (the demo scenario, looped):
Masimo ASCII 1 (1 line/s, 24 h), Nonin DF7 (a 25-frame packet per read, 3 h), Contec V7 and
Contec legacy (60 packets/s, one packet per read as a USB link delivers them, 3 h). Then, best
of `--runs` in this one run, it times:

- `sessiond replay FILE --readings --out /dev/null` as a subprocess (start-up, capture
  parsing, decoders, timeline, alarm engine, JSON), against the peer parser of
  `bench/peers.py` run in-process on the same device bytes in 4 KiB chunks: ratio = peer time
  / sessiond time (>= 1: sessiond as a whole is at least as fast); and the same with a dose
  15 minutes in (`--dose-at 900`: the phases, and discharge readiness from the dose on);
- the sessiond decoder alone against the same peer, both in-process on 4 KiB chunks: through
  its bulk entry (`feed_timed`, a chunk as one piece), which gives a Masimo's runs of lines
  in columns (`ReadingColumns`: a `Reading` is made when one is looked at, as replay's
  quiet stretches never do), and through `feed`, which makes every Reading;
- start-up: `sessiond --help` and `sessiond replay` on an empty capture, as installed
  (compiled modules cached) and, where PYTHONDONTWRITEBYTECODE is set, compiling every module.

Processes run as installed unless `--as-is`: compiled modules are cached in a temporary
folder (PYTHONPYCACHEPREFIX), as pip's compiled wheel would have them.

Prints a table of each figure beside its anchor and the machine it ran on. Asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import PEERS  # type: ignore[import-not-found]  # beside this file

from sessiond.clock import VirtualClock
from sessiond.devices import make_decoder
from sessiond.sim.devices import StreamingPlayer
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

CHUNK = 4096
ROOT = Path(__file__).resolve().parent.parent


def sim_chunks(protocol: str, seconds: int) -> tuple[list[bytes], int]:
    """The simulated device's bytes for `seconds` of the demo scenario, chunk by chunk."""
    scenario = builtin_scenario("demo")
    clock = VirtualClock()  # no loop needed: the players only render bytes here
    sim = Simulator(scenario=scenario, clock=clock, devices={"spo2": protocol})  # type: ignore[arg-type]
    player = sim.players["spo2"]
    assert isinstance(player, StreamingPlayer)
    per_s = player.chunks_per_s
    wanted, period = seconds * per_s, scenario.duration_s * per_s
    chunks: list[bytes] = []
    while len(chunks) < wanted:
        chunks += player.render(0, min(period, wanted - len(chunks)))
    return chunks, per_s


def v7_to_legacy(v7: bytes) -> bytes:
    """The same packets in the legacy 5-byte format (the fields both protocols carry)."""
    p = np.frombuffer(v7, dtype=np.uint8).reshape(-1, 9).astype(np.int64)
    hb = p[:, 1]
    d = (p[:, 2:] & 0x7F) | (((hb[:, None] >> np.arange(7)) & 1) << 7)
    d0, d1, d2, pr, spo2 = d[:, 0], d[:, 1], d[:, 2], d[:, 3], d[:, 4]
    out = np.empty((len(p), 5), dtype=np.uint8)
    finger_out = (d0 >> 7) & 1
    out[:, 0] = 0x80 | (d0 & 0x6F) | (finger_out << 4)
    out[:, 1] = d1 & 0x7F
    out[:, 2] = (d2 & 0x0F) | (((d1 >> 7) & 1) << 5) | (((pr >> 7) & 1) << 6)
    out[:, 3] = pr & 0x7F
    out[:, 4] = np.minimum(spo2, 127)
    return out.tobytes()


def device_reads(protocol: str, seconds: int) -> tuple[list[bytes], float]:
    """The bytes as a link reads them (one item per read) and the reads' period (s)."""
    if protocol in ("contec-v7", "contec-legacy"):
        chunks, per_s = sim_chunks("contec-v7", seconds)
        stream = b"".join(chunks)
        size = 9
        if protocol == "contec-legacy":
            stream, size = v7_to_legacy(stream), 5
        return [stream[i : i + size] for i in range(0, len(stream), size)], 1 / 60
    chunks, per_s = sim_chunks(protocol, seconds)
    return chunks, 1 / per_s


def write_capture(path: Path, protocol: str, reads: Sequence[bytes], period: float) -> None:
    with path.open("w", encoding="utf-8") as f:
        f.write(f"# sessiond-capture 1\n# port spo2 {protocol}\n")
        f.writelines(f"{k * period:.3f} spo2 < {data.hex()}\n" for k, data in enumerate(reads))


def best(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def startup(
    run: Callable[..., None], empty: Path, runs: int, envs: dict[str, dict[str, str]]
) -> list[tuple[str, str, str, str]]:
    """`sessiond --help` and `sessiond replay` of an empty capture, in each environment (one
    that caches bytecode by itself is timed once, as installed)."""
    rows: list[tuple[str, str, str, str]] = []
    for name, env in envs.items():
        if name != "as installed" and "PYTHONDONTWRITEBYTECODE" not in env:
            continue
        run("--help", env=env)  # the first run compiles what the cache lacks
        run("replay", str(empty), "--out", os.devnull, env=env)
        help_s = best(max(runs, 5), functools.partial(run, "--help", env=env))
        empty_s = best(
            max(runs, 5), functools.partial(run, "replay", str(empty), "--out", os.devnull, env=env)
        )
        target = "0.100 s (target)"
        rows.append((f"start-up: sessiond --help ({name})", f"{help_s:.3f} s", target, ""))
        rows.append((f"start-up: replay, empty capture ({name})", f"{empty_s:.3f} s", target, ""))
    return rows


def time_decoder(protocol: str, chunks: list[bytes], runs: int) -> tuple[float, float]:
    """The decoder on `chunks` through `feed_timed` (a chunk as one piece) and `feed`."""

    def bulk() -> int:
        d = make_decoder(protocol, device="spo2")
        ends, times = np.zeros(1, dtype=np.int64), np.zeros(1)
        count = 0
        for c in chunks:
            ends[0] = len(c)
            count += len(d.feed_timed(c, ends, times).readings)
        return count

    def objects() -> int:
        d = make_decoder(protocol, device="spo2")
        return sum(len(d.feed(c, 0.0)) for c in chunks)

    return best(runs, bulk), best(runs, objects)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=3.0, help="Nonin and Contec (3)")
    parser.add_argument("--masimo-hours", type=float, default=24.0, help="Masimo (24)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the captures here")
    parser.add_argument(
        "--sessiond",
        default=f"{sys.executable} -m sessiond",
        help="the command to time (default: this Python's -m sessiond)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="time the processes with this environment's bytecode settings throughout "
        "(default: as installed, compiled modules cached in a temporary folder)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    cmd = shlex.split(args.sessiond)
    as_is = dict(os.environ)
    as_is.setdefault("PYTHONPATH", str(ROOT))
    # An installed package runs from compiled modules (pip compiles a wheel's); a source
    # tree under PYTHONDONTWRITEBYTECODE compiles every module at every start.
    installed = {k: v for k, v in as_is.items() if k != "PYTHONDONTWRITEBYTECODE"}
    installed["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="sessiond-bench-pyc-")
    env = as_is if args.as_is else installed
    folder = args.dir or Path(tempfile.mkdtemp(prefix="sessiond-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}")
    print(f"sessiond: {args.sessiond}; best of {args.runs}; captures in {folder}")
    print("processes: " + ("this environment's bytecode settings" if args.as_is
                           else "as installed (compiled modules cached)"))  # fmt: skip

    def run(*argv: str, env: dict[str, str] = env) -> None:
        subprocess.run([*cmd, *argv], check=True, env=env, stdout=subprocess.DEVNULL)  # noqa: S603

    empty = folder / "empty.cap"
    empty.write_text("# sessiond-capture 1\n# port spo2 contec-v7\n", encoding="utf-8")
    rows = startup(run, empty, args.runs, {"as installed": installed, "no bytecode cache": as_is})

    sizes = {
        "masimo-ascii1": args.masimo_hours,
        "nonin-df7": args.hours,
        "contec-v7": args.hours,
        "contec-legacy": args.hours,
    }
    for protocol, hours in sizes.items():
        seconds = int(hours * 3600)
        cap = folder / f"{protocol}-{hours:g}h.cap"
        reads, period = device_reads(protocol, seconds)
        if not cap.exists():
            write_capture(cap, protocol, reads, period)
        stream = b"".join(reads)
        chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
        peer_cls = PEERS[protocol]

        def peer(peer_cls: type = peer_cls, chunks: list[bytes] = chunks) -> int:
            p = peer_cls()
            return sum(len(p.feed(c)) for c in chunks)

        peer_s = best(args.runs, peer)
        dec_s, objects_s = time_decoder(protocol, chunks, args.runs)

        def whole(cap: Path = cap, *dose: str) -> None:
            run("replay", str(cap), "--readings", "--out", os.devnull, *dose)

        whole_s = best(args.runs, whole)
        dosed_s = best(args.runs, functools.partial(whole, cap, "--dose-at", "900"))
        label = f"{protocol} {hours:g} h ({len(stream) / 1e6:.1f} MB, {len(reads):,} reads)"
        rows.append(
            (
                f"replay, whole process: {label}",
                f"{whole_s:.3f} s",
                f"peer in-process {peer_s:.3f} s",
                f"{peer_s / whole_s:.2f}x",
            )
        )
        rows.append(
            (
                "  the same with a dose at 15 min",
                f"{dosed_s:.3f} s",
                f"peer in-process {peer_s:.3f} s",
                f"{peer_s / dosed_s:.2f}x",
            )
        )
        rows.append(
            (
                f"decoder alone, 4 KiB chunks: {protocol}",
                f"{dec_s:.3f} s",
                f"peer in-process {peer_s:.3f} s",
                f"{peer_s / dec_s:.1f}x",
            )
        )
        rows.append(
            (
                "  the same through feed (a Reading object each)",
                f"{objects_s:.3f} s",
                f"peer in-process {peer_s:.3f} s",
                f"{peer_s / objects_s:.1f}x",
            )
        )
        if protocol.startswith("contec"):
            rows.append(
                (f"  3 h of {protocol} at 60 Hz, whole process", f"{whole_s:.3f} s", "1 s", "")
            )
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'sessiond':>10}  {'anchor':<26}  ratio")
    for name, value, anchor, ratio in rows:
        print(f"{name:<{width}}  {value:>10}  {anchor:<26}  {ratio}")


if __name__ == "__main__":
    main()
