"""Running under systemd: the notify/watchdog protocol on a real socket, journal entries, and
the shipped unit file checked by systemd's own tools."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessiond.service import JournalHandler, ServiceNotifier

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "sessiond.service"


class NotifySocket:
    """A datagram socket standing in for systemd's `$NOTIFY_SOCKET`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)  # noqa: FBT003

    async def next(self, timeout_s: float = 10.0) -> tuple[float, str]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            data = await loop.sock_recv(self.sock, 4096)
        return time.monotonic(), data.decode()

    def close(self) -> None:
        self.sock.close()


async def test_ready_then_keepalives_from_the_event_loop(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    env = {"NOTIFY_SOCKET": str(sock.path), "WATCHDOG_USEC": "100000"}
    notifier = ServiceNotifier(env)
    assert notifier.keepalive_s == pytest.approx(0.05)
    try:
        notifier.ready(status="room-1: monitoring")
        _, first = await sock.next()
        assert first == "READY=1\nSTATUS=room-1: monitoring"
        beats = [await sock.next() for _ in range(3)]
        assert {text for _, text in beats} == {"WATCHDOG=1"}
        # A loop that hangs sends nothing while it hangs: that is what the watchdog sees.
        before, _ = await sock.next()
        time.sleep(0.4)  # noqa: ASYNC251  (the event loop itself hangs here, on purpose)
        after, _ = await sock.next()
        assert after - before >= 0.35
        notifier.stopping()
        while (await sock.next())[1] == "WATCHDOG=1":
            pass  # one may have been queued before the stop
    finally:
        notifier.close()
        sock.close()


def test_not_under_systemd_nothing_is_sent():
    notifier = ServiceNotifier({})
    assert not notifier.enabled
    assert notifier.keepalive_s is None
    assert notifier.notify("READY=1") is False


def test_a_watchdog_meant_for_another_process_is_not_ours(tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "n"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    assert ServiceNotifier(env).keepalive_s is None


async def test_the_daemon_says_ready_keeps_alive_and_says_stopping(tmp_path):
    sock = NotifySocket(tmp_path / "notify")
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(sock.path),
        "WATCHDOG_USEC": "400000",
    }
    config = tmp_path / "room.toml"
    config.write_text("[console]\nport = 0\n[music]\nenabled = false\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sessiond", "demo", "--speed", "10", "--config", str(config),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        _, ready = await sock.next(timeout_s=30)
        assert ready.startswith("READY=1\nSTATUS=room ")
        assert [(await sock.next())[1] for _ in range(3)] == ["WATCHDOG=1"] * 3
        os.killpg(proc.pid, signal.SIGTERM)
        texts = []
        while "STOPPING=1" not in texts:
            texts.append((await sock.next())[1])
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        sock.close()


def test_journal_entries_are_structured(tmp_path):
    path = tmp_path / "journal"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    handler = JournalHandler(str(path))
    log = logging.getLogger("sessiond.test.journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("spo2: link down: %s", "no data for 5 s")
        plain = server.recv(65536)
        try:
            raise ValueError("boom")  # noqa: TRY301
        except ValueError:
            log.exception("monitor: a rule failed")
        multi = server.recv(65536)
    finally:
        log.removeHandler(handler)
        handler.close()
        server.close()
    fields = dict(line.split(b"=", 1) for line in plain.rstrip(b"\n").split(b"\n"))
    assert fields[b"MESSAGE"] == b"spo2: link down: no data for 5 s"
    assert fields[b"PRIORITY"] == b"4"
    assert fields[b"SYSLOG_IDENTIFIER"] == b"sessiond"
    assert fields[b"LOGGER"] == b"sessiond.test.journal"
    # A message with newlines (a traceback) is length-prefixed, as the protocol says.
    start = multi.index(b"MESSAGE\n") + len(b"MESSAGE\n")
    size = int.from_bytes(multi[start : start + 8], "little")
    message = multi[start + 8 : start + 8 + size].decode()
    assert message.startswith("monitor: a rule failed\nTraceback")
    assert "ValueError: boom" in message


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart pointing at this checkout's sessiond."""
    exe = str(Path(sys.executable).with_name("sessiond"))
    path = tmp_path / "sessiond.service"
    path.write_text(UNIT.read_text().replace("/opt/sessiond/bin/sessiond", exe))
    return path


def test_the_unit_file_passes_systemd_analyze_verify(unit):
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sessiond.service" not in done.stderr  # no warning about our unit


def test_the_unit_file_is_hardened(unit):
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    match = re.search(r"Overall exposure level for sessiond.service: ([\d.]+) (\w+)", done.stdout)
    assert match is not None, done.stdout[-500:]
    assert float(match.group(1)) <= 2.0  # "OK"; README shows the figure
    text = UNIT.read_text()
    wanted = [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "Restart=always",
        "SupplementaryGroups=dialout",
        "StateDirectory=",
        "ConfigurationDirectory=",
    ]
    assert [s for s in wanted if s not in text] == []
