"""`sessiond run` as the clinic runs it, with what the live benches need to look inside.

    python bench/live_daemon.py --config FILE [--speed X] [--bus-times FILE]
                                [--mqtt-nagle] [--report FILE] [--tracemalloc]
                                [--sqlite-cache-kib N]

Runs `sessiond.cli.main(["run", "--config", FILE])` in this process, plus:

- `--times FILE`: the `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process
  of the machine) at which each alarm transition is put on the bus (`bus`), handed to the
  console's WebSocket (`ws`) and handed to the MQTT client as an `event` (`mqtt`), written
  as JSON when the daemon exits: `[t, where, alarm id, state]`. A list append per alarm
  transition and a substring test per WebSocket message; nothing else changes.
- `--speed X`: session time runs X times faster (the clock `sessiond demo --speed` uses), for
  a 3-hour session in minutes against a simulator at the same speed. 1: real time.
- `--mqtt-nagle`: the MQTT client's socket without TCP_NODELAY (to compare).
- `--sqlite-cache-kib N`: the SQLite page cache of the daemon's connections (to compare).
- `--report FILE`: on SIGUSR1, write what the process holds (JSON: RSS, the modules loaded,
  threads, the bus queues, and with `--tracemalloc` the top allocation sites and a dump of
  the snapshot).
"""

# ruff: noqa: PLC0415 - sessiond is imported after tracemalloc starts, so that it is traced

from __future__ import annotations

import argparse
import functools
import gc
import json
import re
import signal
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

    from sessiond.model import Event

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _report(path: Path, *, traced: bool) -> None:
    """What the running daemon holds, for `bench/footprint.py`'s breakdown."""
    from sessiond import bus as bus_module

    queues = [
        {"name": sub.name, "queued": len(sub), "dropped": sub.dropped}
        for obj in gc.get_objects()
        if isinstance(obj, bus_module.Bus)
        for sub in obj._subscriptions  # noqa: SLF001 - a bench looks inside
    ]
    out: dict[str, Any] = {
        "rss_kb": _status_kb("VmRSS"),
        "hwm_kb": _status_kb("VmHWM"),
        "modules": sorted(sys.modules),
        "threads": [t.name for t in threading.enumerate()],
        "gc_objects": len(gc.get_objects()),
        "bus_queues": queues,
    }
    if traced and tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        # Kept whole, so that two reports can be compared (`Snapshot.compare_to`).
        out["snapshot"] = str(path.with_suffix(f".{time.monotonic_ns()}.snap"))
        snapshot.dump(out["snapshot"])
        by_file = snapshot.statistics("filename")
        out["traced_kb"] = tracemalloc.get_traced_memory()[0] // 1024
        out["top_files"] = [
            {"file": str(s.traceback[0].filename), "kb": s.size // 1024, "count": s.count}
            for s in by_file[:40]
        ]
        out["top_lines"] = [
            {"where": str(s.traceback[0]), "kb": s.size // 1024, "count": s.count}
            for s in snapshot.statistics("lineno")[:25]
        ]
    path.write_text(json.dumps(out, indent=1), encoding="utf-8")


def _probe(seen: list[tuple[float, str, str, str]]) -> None:
    """Note when each alarm transition reaches the bus, the WebSocket and the MQTT client."""
    import aiomqtt
    from aiohttp import web

    from sessiond.bus import Bus
    from sessiond.model import AlarmTransition

    publish = Bus.publish

    def bus_publish(self: Bus, event: Event) -> None:
        if type(event) is AlarmTransition:
            seen.append((time.monotonic(), "bus", event.alarm_id, event.state.value))
        publish(self, event)

    send_str = web.WebSocketResponse.send_str

    async def ws_send_str(self: web.WebSocketResponse, data: str, *a: Any, **k: Any) -> None:  # noqa: ANN401 - passed through
        if '"type": "alarm"' in data:
            message = json.loads(data)
            seen.append((time.monotonic(), "ws", message["id"], message["state"]))
        await send_str(self, data, *a, **k)

    mqtt_publish = aiomqtt.Client.publish

    async def client_publish(self: aiomqtt.Client, topic: str, payload: Any = None,  # noqa: ANN401
                             *a: Any, **k: Any) -> None:  # noqa: ANN401  # fmt: skip
        if topic.endswith("/event") and isinstance(payload, str) and '"alarm"' in payload:
            message = json.loads(payload)
            seen.append((time.monotonic(), "mqtt", message["id"], message["state"]))
        await mqtt_publish(self, topic, payload, *a, **k)

    Bus.publish = bus_publish  # type: ignore[method-assign]
    web.WebSocketResponse.send_str = ws_send_str  # type: ignore[method-assign, assignment]
    aiomqtt.Client.publish = client_publish  # type: ignore[method-assign, assignment]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--times", type=Path, default=None)
    parser.add_argument("--mqtt-nagle", action="store_true")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--sqlite-cache-kib", type=int, default=None)
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(4)

    import sessiond.app
    import sessiond.room.mqtt
    from sessiond.cli import main as sessiond_main
    from sessiond.clock import LoopClock

    if args.speed != 1.0:
        # `run_daemon` makes its clock as `LoopClock()`: the same daemon, on scaled time.
        sessiond.app.LoopClock = functools.partial(LoopClock, speed=args.speed)  # type: ignore[attr-defined, assignment]
    if args.sqlite_cache_kib is not None:
        # The page cache of the recorder's and the console's connections, to compare.
        import sessiond.records.read
        import sessiond.records.store

        sessiond.records.store.CACHE_KIB = args.sqlite_cache_kib
        sessiond.records.read.CACHE_KIB = args.sqlite_cache_kib  # type: ignore[attr-defined]
    if args.mqtt_nagle:
        make_client = sessiond.room.mqtt.make_client

        def nagle_client(*a: Any, **k: Any) -> Any:  # noqa: ANN401 - passed through
            client = make_client(*a, **k)
            client._socket_options = ()  # noqa: SLF001 - the comparison without TCP_NODELAY
            return client

        sessiond.room.mqtt.make_client = nagle_client

    seen: list[tuple[float, str, str, str]] = []
    if args.times is not None:
        _probe(seen)
    if args.report is not None:
        report_path: Path = args.report

        def on_usr1(_sig: int, _frame: FrameType | None) -> None:
            _report(report_path, traced=args.tracemalloc)

        signal.signal(signal.SIGUSR1, on_usr1)
    try:
        return sessiond_main(["run", "--config", str(args.config)])
    finally:
        if args.times is not None:
            args.times.write_text(json.dumps(seen), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
