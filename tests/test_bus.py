"""The bus: fan-out, bounded queues that drop only the slow subscriber's own oldest readings."""

from __future__ import annotations

import asyncio

from sessiond.bus import Bus
from sessiond.clock import LoopClock, VirtualClock
from sessiond.model import AlarmState, AlarmTransition, Priority, Reading


def reading(t: float) -> Reading:
    return Reading(t=t, device="spo2", spo2=97)


def alarm(t: float) -> AlarmTransition:
    return AlarmTransition(t=t, alarm_id="spo2_low", priority=Priority.HIGH,
                           state=AlarmState.ACTIVE)  # fmt: skip


async def test_every_subscriber_gets_every_event_in_order():
    bus = Bus()
    a, b = bus.subscribe("a"), bus.subscribe("b")
    for i in range(3):
        bus.publish(reading(i))
    bus.close()
    assert [e.t async for e in a] == [0, 1, 2]
    assert [e.t async for e in b] == [0, 1, 2]


async def test_slow_subscriber_drops_its_own_oldest_readings_never_alarms():
    bus = Bus()
    slow, fast = bus.subscribe("slow", maxsize=3), bus.subscribe("fast", maxsize=100)
    bus.publish(alarm(0))
    for i in range(1, 11):
        bus.publish(reading(i))
    bus.publish(alarm(11))
    assert slow.dropped == 7
    kept = [(type(e).__name__, e.t) for e in [slow.get_nowait() for _ in range(len(slow))] if e]
    assert kept == [("AlarmTransition", 0), ("Reading", 8), ("Reading", 9), ("Reading", 10),
                    ("AlarmTransition", 11)]  # fmt: skip
    assert fast.dropped == 0
    assert len(fast) == 12


async def test_get_waits_for_the_next_event():
    bus = Bus()
    sub = bus.subscribe("s")
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    bus.publish(reading(5))
    async with asyncio.timeout(1):
        assert (await waiting).t == 5


async def test_publish_never_waits_for_a_stuck_consumer():
    bus = Bus()
    bus.subscribe("never-reads", maxsize=10)
    for i in range(100_000):
        bus.publish(reading(i))  # synchronous: returns at once whatever the consumer does


async def test_loop_clock_applies_the_speed_once():
    loop = asyncio.get_running_loop()
    clock = LoopClock(speed=60)
    start = loop.time()
    await clock.sleep(6.0)  # six session seconds = 0.1 s of loop time
    assert 0.09 <= loop.time() - start < 1.0
    assert clock.now() >= 6.0
    assert abs(clock.loop_time(60.0) - (clock.loop_time(0.0) + 1.0)) < 1e-9
    wall0, wall60 = clock.wall(0.0), clock.wall(60.0)
    assert (wall60 - wall0).total_seconds() == 60.0
    assert wall0.tzinfo is not None


def test_virtual_clock_moves_only_when_told():
    clock = VirtualClock()
    assert clock.now() == 0.0
    clock.t = 12.5
    assert clock.now() == 12.5
    assert (clock.wall(10.0) - clock.wall(0.0)).total_seconds() == 10.0
