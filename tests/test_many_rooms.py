"""Fifty rooms on one broker: fifty `sessiond demo` processes on simulated devices, one
Mosquitto, one overview subscriber. No alarm transition of any room is lost: every one in a
room's record is seen on the broker, in order, and the broker keeps up.

`bench/many_rooms.py` runs the same fleet and prints its figures.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING

import pytest

from sessiond.sim.fleet import (
    Overview,
    command_round_trip,
    follow,
    recorded_alarms,
    start_rooms,
    stop_rooms,
)
from tests import mosquitto
from tests.mosquitto import Mosquitto

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed"),
    pytest.mark.timeout(240),
]

ROOMS = int(os.environ.get("SESSIOND_TEST_ROOMS", "50"))
#: The fleet scenario lasts 150 s of session time: 15 s at 10x.
SPEED = 10.0


async def test_fifty_rooms_lose_no_alarm_on_one_broker(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, extra_config=("max_queued_messages 10000",)) as broker:
        overview = Overview()
        done = asyncio.Event()
        watcher = asyncio.create_task(follow(broker.port, overview, done))
        rooms = await start_rooms(ROOMS, broker_port=broker.port, workdir=tmp_path, speed=SPEED)
        try:
            async with asyncio.timeout(120):
                await overview.until(lambda o: len(o.online) == ROOMS)
            # The overview can command any room; the answer comes back through the broker.
            round_trips = [await command_round_trip(broker.port, r.room_id) for r in rooms[:5]]
            # Each room raises and clears its scenario's alarms (15 s at 10x).
            cleared = ("sensor_off", "medium", "cleared")
            async with asyncio.timeout(120):
                await overview.until(
                    lambda o: all(cleared in o.alarms.get(r.room_id, []) for r in rooms)
                )
        finally:
            codes = await stop_rooms(rooms)
            async with asyncio.timeout(10):  # every room says goodbye (retained `offline`)
                await overview.until(lambda o: not o.online)
            done.set()
            await watcher
    assert codes == [0] * ROOMS
    lost = {}
    for room in rooms:
        recorded = recorded_alarms(room)
        seen = overview.alarms.get(room.room_id, [])
        assert ("spo2_low", "high", "active") in recorded, room.room_id
        if seen != recorded:
            lost[room.room_id] = (recorded, seen)
    assert lost == {}
    assert max(round_trips) < 5.0


def test_a_transition_delivered_twice_is_taken_once() -> None:
    """QoS 1 is at least once: a room sends an event again when the broker's acknowledgement
    is late. The same transition again is counted, not taken; another one is taken."""
    overview = Overview()
    cleared = {"type": "alarm", "id": "sensor_off", "priority": "medium", "state": "cleared"}
    first, later = ({"t": t, **cleared} for t in (12.5, 20.0))
    for event in (first, first, later):
        overview.take("sessiond/room-1/event", json.dumps(event).encode())
    assert overview.alarms["room-1"] == [("sensor_off", "medium", "cleared")] * 2
    assert overview.duplicates == 1
