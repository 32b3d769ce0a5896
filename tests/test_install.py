"""`sessiond init` finds the simulator's devices by their stable names and guesses each
protocol; `sessiond backup` copies a record that is being written."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from sessiond.config import load_config
from sessiond.console.auth import verify_password
from sessiond.install import backup
from tests.test_run_sim import line_starting, process, stop

if TYPE_CHECKING:
    from pathlib import Path

DEVICES = "ox1=masimo-ascii1,ox2=nonin-df7,ox3=contec-v7,bp=suntech-advantage"


async def test_init_finds_each_device_and_writes_a_valid_config(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / "usb-nothing-there").symlink_to(tmp_path / "missing")
    async with process("sim", "--speed", "1", "--devices", DEVICES, "--link-dir", str(by_id),
                       cwd=tmp_path) as sim:  # fmt: skip
        await line_starting(sim, "bp ")
        out = tmp_path / "etc"
        init = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", "init", "--dir", str(out), "--room", "room-7",
            "--user", "ana", "--password-stdin", "--serial-dir", str(by_id),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await init.communicate(b"correct horse\n")
        assert init.returncode == 0, stderr.decode()
        assert await stop(sim) == 0
    said = dict(line.split(": ", 1) for line in stdout.decode().splitlines() if ": " in line)
    guesses = {path.rsplit("/", 1)[1]: text.split(" ", 1)[0] for path, text in said.items()
               if path.startswith(str(by_id))}  # fmt: skip
    assert guesses == {
        "ox1": "masimo-ascii1",
        "ox2": "nonin-df7",
        "ox3": "contec-v7",
        "bp": "suntech-advantage",
        "usb-nothing-there": "unknown",
    }
    config = load_config(out / "sessiond.toml")  # valid, and every key not written defaulted
    assert config.room.id == "room-7"
    assert verify_password("correct horse", config.console.users["ana"].password_hash)
    assert {d.decoder for d in config.devices.values()} >= {"masimo-ascii1", "suntech-advantage"}
    assert config.devices["nibp"].path == str(by_id / "bp")
    assert config.devices["spo2"].path.startswith(str(by_id))
    assert "correct horse" not in (out / "sessiond.toml").read_text()
    assert (out / "sessiond.toml").stat().st_mode & 0o077 == 0


def test_init_refuses_to_overwrite_and_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "sessiond.toml").write_text("# the clinic's own\n")
    args = [sys.executable, "-m", "sessiond", "init", "--dir", str(tmp_path), "--user", "ana",
            "--password-stdin", "--serial-dir", str(tmp_path / "none")]  # fmt: skip
    done = subprocess.run(args, input="correct horse\n", capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 2
    assert "exists" in done.stderr
    assert (tmp_path / "sessiond.toml").read_text() == "# the clinic's own\n"
    short = subprocess.run([*args, "--force"], input="short\n", capture_output=True, text=True,
                           check=False)  # fmt: skip
    assert short.returncode == 2
    assert short.stderr.count("\n") == 1


def test_backup_while_the_record_is_written(tmp_path: Path) -> None:
    source, copy = tmp_path / "r.sqlite", tmp_path / "backup.sqlite"
    db = sqlite3.connect(source, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE sessions (id TEXT)")
    db.execute("CREATE TABLE readings (t REAL)")
    db.execute("INSERT INTO sessions VALUES ('s1')")
    stop_writing = threading.Event()

    def writer() -> None:
        w = sqlite3.connect(source, isolation_level=None)
        t = 0.0
        while not stop_writing.is_set():
            w.execute("INSERT INTO readings VALUES (?)", (t,))
            t += 1
        w.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert backup(source, copy) == 1
    finally:
        stop_writing.set()
        thread.join()
    copied = sqlite3.connect(copy)
    assert copied.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (n,) = copied.execute("SELECT count(*) FROM readings").fetchone()
    ts = [t for (t,) in copied.execute("SELECT t FROM readings ORDER BY t")]
    assert ts == [float(k) for k in range(n)]  # a consistent snapshot: no holes
    with pytest.raises(FileExistsError):
        backup(source, copy)


def test_backup_command_names_a_missing_record(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[records]\npath = '{tmp_path / 'none.sqlite'}'\n")
    done = subprocess.run(
        [sys.executable, "-m", "sessiond", "backup", "--config", str(config), "--out",
         str(tmp_path / "b.sqlite")], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no record there" in done.stderr
