"""Start-up failures of `sessiond run`: one line naming the cause and the setting, exit 2.

DESIGN §12: a setting that cannot work on this machine is a bad input, never a traceback.
"""

from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e


def unwritable(tmp: Path) -> tuple[str, str]:
    (tmp / "a-file").write_text("not a folder")
    return f"path = '{tmp / 'a-file' / 'record.sqlite'}'", "[records] path"


def corrupt(tmp: Path) -> tuple[str, str]:
    (tmp / "record.sqlite").write_bytes(b"this is no SQLite database, just bytes " * 100)
    return f"path = '{tmp / 'record.sqlite'}'", "[records] path"


@pytest.mark.parametrize("problem", [unwritable, corrupt, None], ids=["unwritable-records",
                         "corrupt-database", "console-port-in-use"])  # fmt: skip
async def test_a_start_up_failure_is_one_line_and_exit_2(tmp_path: Path, problem):
    """The record path unwritable, the database not a database, the console port taken."""
    import asyncio  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1] if problem is None else 0
        records, setting = (
            problem(tmp_path) if problem else (f"path = '{tmp_path / 'r.sqlite'}'", "[console]")
        )
        config = tmp_path / "room.toml"
        config.write_text(
            f"[console]\nport = {port}\n[records]\n{records}\n"
            f"[devices.spo2]\npath = '{tmp_path / 'no-such-port'}'\n[music]\nenabled = false\n"
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sessiond", "run", "--config", str(config), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    lines = err.decode().splitlines()
    assert proc.returncode == 2, err.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sessiond: ")
    assert setting in lines[0]
    assert out == b""
