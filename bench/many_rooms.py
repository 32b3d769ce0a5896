"""Many rooms on one broker: message rate, broker CPU, command round trip, alarms lost.

Starts Mosquitto on a free loopback port and N `sessiond demo` rooms (simulated devices,
MQTT on, music off) at --speed, follows them as the clinic overview does, and prints:

    python bench/many_rooms.py --rooms 50 --speed 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sessiond.sim.fleet import (
    Overview,
    command_round_trip,
    cpu_seconds,
    follow,
    recorded_alarms,
    start_rooms,
    stop_rooms,
)
from tests.mosquitto import Mosquitto


async def main(rooms_wanted: int, speed: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        overview = Overview()
        done = asyncio.Event()
        watcher = asyncio.create_task(follow(broker.port, overview, done))
        started = time.monotonic()
        rooms = await start_rooms(
            rooms_wanted, broker_port=broker.port, workdir=Path(tmp), speed=speed
        )
        await overview.until(lambda o: len(o.online) == rooms_wanted)
        up_s = time.monotonic() - started
        assert broker.pid is not None
        cpu0, msgs0, t0 = cpu_seconds(broker.pid), overview.messages, time.monotonic()
        cleared = ("sensor_off", "medium", "cleared")
        await overview.until(lambda o: all(cleared in o.alarms.get(r.room_id, []) for r in rooms))
        cpu1, msgs1, t1 = cpu_seconds(broker.pid), overview.messages, time.monotonic()
        trips = [await command_round_trip(broker.port, r.room_id) for r in rooms]
        await stop_rooms(rooms)
        done.set()
        await watcher
        lost = sum(1 for r in rooms if recorded_alarms(r) != overview.alarms.get(r.room_id, []))
    span = t1 - t0
    print(f"rooms {rooms_wanted}, speed {speed:g}x, all online after {up_s:.1f} s")
    print(f"  messages at the overview: {(msgs1 - msgs0) / span:.0f}/s over {span:.1f} s")
    print(f"  broker CPU: {100 * (cpu1 - cpu0) / span:.1f} % of one core")
    trips_ms = sorted(1000 * t for t in trips)
    print(f"  command round trip (cmd -> recorded -> event): p50 "
          f"{statistics.median(trips_ms):.0f} ms, max {trips_ms[-1]:.0f} ms")  # fmt: skip
    print(f"  rooms whose broker view differs from their record: {lost}")
    print(f"  alarm transitions delivered again (QoS 1, taken once): {overview.duplicates}")
    print(f"  machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--speed", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.rooms, args.speed))
