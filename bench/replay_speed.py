"""How fast replay and the masimo-ascii1 decoder run: prints figures, asserts nothing.

    .venv/bin/python bench/replay_speed.py [--hours 3]

Builds captures of a simulated session (the demo scenario, split in random chunks as a UART
delivers them), then times:
- the Masimo decoder alone, against a plain reference parser (split, dict and strptime per
  line, the way most open-source Masimo readers do it) on the same bytes;
- `replay` end to end (decoders, timeline, alarm engine, BP schedule, discharge readiness,
  JSON output), as times real time, for the 1 Hz Masimo and for a 75 Hz Nonin DF7 (the
  issue's target: a 3-hour 75 Hz capture in seconds, over 1,000x real time).
"""

from __future__ import annotations

import argparse
import io
import random
import time
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from sessiond.clock import VirtualClock
from sessiond.config import Config
from sessiond.devices.masimo import MasimoAscii1Decoder
from sessiond.model import Quality, Reading
from sessiond.records.capture import CaptureReader, CaptureWriter
from sessiond.records.replay import replay
from sessiond.sim.devices import StreamingPlayer
from sessiond.sim.scenario import builtin_scenario
from sessiond.sim.simulator import Simulator


def reference_decode(stream: bytes) -> int:
    """A plain parser with the same output: lines, tokens into a dict, strptime, a Reading.

    This is how most open-source Masimo readers work (one `split` and a dict per line).
    """
    n = 0
    for raw in stream.split(b"\r\n"):
        if not raw:
            continue
        text = raw.decode("ascii", "replace")
        stamp, _, rest = text[:17], text[17], text[18:]
        fields = dict(tok.split("=", 1) for tok in rest.split() if "=" in tok)
        if "SPO2" not in fields or "BPM" not in fields:
            continue
        device_time = datetime.strptime(stamp, "%m/%d/%y %H:%M:%S")  # noqa: DTZ007
        spo2 = None if "--" in fields["SPO2"] else int(fields["SPO2"].rstrip("%"))
        pr = None if "--" in fields["BPM"] else int(fields["BPM"])
        pi_raw = fields.get("PI", "--")
        pi = None if "--" in pi_raw else float(pi_raw.rstrip("%"))
        exc = int(fields.get("EXC", "0"), 16)
        flags = Quality.SENSOR_OFF if exc & 0x20 else Quality.NONE
        Reading(t=0.0, device="spo2", spo2=spo2, pr=pr, pi=pi, flags=flags,
                device_time=device_time)  # fmt: skip
        n += 1
    return n


def session_chunks(hours: float, protocol: str) -> tuple[list[bytes], int, int]:
    """The device's bytes for `hours` of the demo, one item per chunk it sends; chunks/s."""
    scenario = builtin_scenario("demo")
    seconds = int(hours * 3600)
    clock = VirtualClock()  # no loop needed: the players only render bytes here
    sim = Simulator(scenario=scenario, clock=clock, devices={"spo2": protocol})  # type: ignore[arg-type]
    player = sim.players["spo2"]
    assert isinstance(player, StreamingPlayer)
    per_s = player.chunks_per_s
    wanted = seconds * per_s
    period = scenario.duration_s * per_s
    chunks: list[bytes] = []
    while len(chunks) < wanted:
        chunks += player.render(0, min(period, wanted - len(chunks)))
    return chunks, seconds, per_s


def time_replay(chunks: list[bytes], per_s: int, protocol: str, rng: random.Random) -> None:
    """Write `chunks` to a capture (each split in two at random) and replay it."""
    seconds = len(chunks) // per_s
    with TemporaryDirectory() as tmp:
        cap = Path(tmp) / "session.cap"
        writer = CaptureWriter(cap, {"spo2": protocol, "nibp": "suntech-advantage"})
        for k, chunk in enumerate(chunks):
            t = k / per_s
            cut = rng.randrange(1, len(chunk))
            writer.write(t + 0.001, "spo2", "<", chunk[:cut])
            writer.write(t + 0.002, "spo2", "<", chunk[cut:])
        writer.close()
        for readings in (False, True):
            out = io.StringIO()
            start = time.perf_counter()
            with cap.open(encoding="utf-8") as f:
                summary = replay(CaptureReader(f), config=Config(), dose_at=600.0,
                                 readings=readings, write=out.write)  # fmt: skip
            replay_s = time.perf_counter() - start
            flag = " --readings" if readings else ""
            print(f"replay {protocol}{flag}: {replay_s:.2f} s for {seconds} s of session = "
                  f"{seconds / replay_s:,.0f}x real time ({summary['readings']:,} readings, "
                  f"{len(out.getvalue().splitlines()):,} output lines)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=3.0)
    args = parser.parse_args()
    rng = random.Random(1)
    lines, _, _ = session_chunks(args.hours, "masimo-ascii1")
    stream = b"".join(lines)
    print(f"session: {args.hours:g} h of Masimo lines, {len(stream) / 1e6:.2f} MB")

    start = time.perf_counter()
    n_ref = reference_decode(stream)
    ref_s = time.perf_counter() - start
    dec = MasimoAscii1Decoder(device="spo2")
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]
    start = time.perf_counter()
    n = sum(len(dec.feed(chunk, 0.0)) for chunk in chunks)
    dec_s = time.perf_counter() - start
    print(f"decoder, 4 KiB chunks: {n / dec_s:,.0f} lines/s ({n} lines, {dec_s * 1e3:.0f} ms)")
    print(f"reference (split/dict/strptime): {n_ref / ref_s:,.0f} lines/s ({ref_s * 1e3:.0f} ms)")

    for protocol in ("masimo-ascii1", "nonin-df7"):
        chunks, _, per_s = session_chunks(args.hours, protocol)
        time_replay(chunks, per_s, protocol, rng)


if __name__ == "__main__":
    main()
