"""The MQTT broker failing under the real daemon: a huge publish, killed, restarted, frozen.

Monitoring never depends on the broker (DESIGN §2): alarms reach the console on time while it
is gone. The daemon takes a 20 MB publish on `cmd/note` without reading it into memory (MQTT
v5 Maximum Packet Size), notices a frozen broker by the keep-alive, reconnects without a
traceback, and the retained `availability` says `online` whenever it is connected.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import pytest

from tests import mosquitto
from tests.faults.harness import Nurse, Sessiond, alarm, publish, start_session, write_config
from tests.mosquitto import HOST, Mosquitto, listen

if TYPE_CHECKING:
    from tests.mosquitto import Listener

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed"),
]

SPEED = 20
KEEPALIVE_S = 5
DESAT = 80  # SpO2 87 % from here: spo2_low at ~95 s, while the broker is down
SCENARIO = f"""
name = "broker-faults"
seed = 4
duration_s = 7200
[[events]]
kind = "desaturation"
at_s = {DESAT}
duration_s = 3600
spo2 = 87
ramp_s = 2
"""
BASE = "sessiond/room-f"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    msg = f"no VmRSS for {pid}"
    raise AssertionError(msg)


async def online_again(port: int) -> Listener:
    """A fresh listener's view once the retained availability says `online`."""
    async with listen(port, f"{BASE}/#") as heard:
        await heard.wait_for(f"{BASE}/availability", lambda m: m.payload == b"online", within_s=15)
        # A vitals message after it: the daemon is connected and nothing said `offline` since.
        mark = heard.mark()
        await heard.wait_for(f"{BASE}/vitals", after=mark, within_s=5)
        return heard


async def test_broker_faults_never_reach_monitoring_and_availability_tells_the_truth(
    tmp_path: Path,
):
    """A 20 MB command, the broker SIGKILLed and restarted, then frozen (SIGSTOP) and thawed:
    RSS stays flat, spo2_low on time while the broker is dead, `online` again after each."""
    # No size limit in this broker: the daemon's own limit is what is tested.
    with Mosquitto(tmp_path, message_size_limit=0) as broker:
        config = write_config(
            tmp_path,
            scenario=SCENARIO,
            extra=f"[mqtt]\nenabled = true\nport = {broker.port}\ndiscovery = false\n"
            f"keepalive_s = {KEEPALIVE_S}\ntimeout_s = 3\nreconnect_min_s = 0.2\n"
            "reconnect_max_s = 1\n",
        )
        args = ("demo", "--speed", str(SPEED), "--config", str(config))
        async with Sessiond(*args, cwd=tmp_path) as d, Nurse(await d.console_url()) as nurse:
            await online_again(broker.port)
            await start_session(nurse)
            # A 20 MB publish on cmd/note: the broker drops it for the daemon, unread.
            before = rss_kib(d.pid)
            async with listen(broker.port, f"{BASE}/event") as heard:
                mark = len(nurse.seen)
                await publish(broker.port, f"{BASE}/cmd/note", b"x" * 20_000_000)
                await publish(broker.port, f"{BASE}/cmd/note", b"y" * 20_000)
                refused = await heard.wait_for(f"{BASE}/event", lambda m: b"error" in m.payload)
            grown_kib = rss_kib(d.pid) - before

            # Killed: the daemon notices at once and monitoring goes on.
            log = len(d.log)
            broker.kill()
            await d.wait_line(r"mqtt: broker .* unavailable", after=log, within=5)
            low = await nurse.wait(alarm("spo2_low"), within=20)
            # From the oversized publish through the broker's death: readings never stall.
            readings = [m["t"] for m in nurse.seen[mark:] if m.get("type") == "reading"]
            broker.start()
            restarted = await online_again(broker.port)

            # Frozen: noticed by the keep-alive, within twice its period.
            log = len(d.log)
            loop = asyncio.get_running_loop()
            frozen = loop.time()
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                await d.wait_line(r"mqtt: broker .* unavailable", after=log, within=15)
                noticed_s = loop.time() - frozen
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            thawed = await online_again(broker.port)
            async with aiomqtt.Client(HOST, broker.port) as client:  # the broker answers again
                await client.publish(f"{BASE}/probe", b"", qos=1)
            assert await d.stop() == 0
            d.assert_no_traceback()

    assert refused.json()["error"] == "payload: larger than 16384 bytes"
    assert grown_kib < 5_000, grown_kib  # the 20 MB never reached the daemon
    assert len(readings) > 2
    assert max(b - a for a, b in itertools.pairwise(readings)) < 3.0  # s of session: no stall
    assert DESAT + 15 <= low["t"] <= DESAT + 22, low
    alarms = [m.json() for m in restarted.on(f"{BASE}/alarm")]
    assert any(a["id"] == "spo2_low" for a in alarms[-1]), alarms
    assert noticed_s <= 2 * KEEPALIVE_S + 1.5, noticed_s
    availability = [m.payload for m in thawed.on(f"{BASE}/availability")]
    assert availability[-1] == b"online", availability
