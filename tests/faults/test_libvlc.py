"""libvlc missing under the real daemon: the music is reported unavailable, nothing else waits.

python-vlc is pointed at a library that is not there (`PYTHON_VLC_LIB_PATH`, on which it
would exit the process): the daemon says "music unavailable" once, shows it as a device on
the console, and starts monitoring as promptly as without music.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Nurse, Sessiond, alarm, start_session, write_config

pytestmark = pytest.mark.e2e

PLAYLISTS = Path(__file__).resolve().parents[2] / "playlists"
SPEED = 20
DESAT = 40
SCENARIO = f"""
name = "no-libvlc"
seed = 2
duration_s = 3600
[[events]]
kind = "desaturation"
at_s = {DESAT}
duration_s = 600
spo2 = 87
ramp_s = 2
"""


def music_reason(m: dict[str, Any]) -> bool:
    """The music's status with its reason: in the page's snapshot, or a later device message."""
    music = m.get("devices", {}).get("music") or (m if m.get("device") == "music" else None)
    return music is not None and "libvlc" in music["detail"]


async def test_libvlc_missing_is_reported_and_monitoring_starts_at_once(tmp_path: Path):
    """Music unavailable (log, console device), the first reading within a second of the
    console, spo2_low on time, a clean exit."""
    config = write_config(
        tmp_path,
        scenario=SCENARIO,
        extra=f"[music]\nenabled = true\ngenerate_ambient = false\nplaylists_dir = '{PLAYLISTS}'\n"
        "vlc_args = ['--aout=alsa', '--alsa-audio-device=null', '--no-video', '--quiet']\n",
    )
    env = {"PYTHON_VLC_LIB_PATH": str(tmp_path / "no" / "libvlc.so.5")}
    args = ("demo", "--speed", str(SPEED), "--config", str(config))
    async with Sessiond(*args, cwd=tmp_path, env=env) as d, Nurse(await d.console_url()) as nurse:
        first = await nurse.wait(lambda m: m.get("type") == "reading", within=5)
        said = await nurse.wait(music_reason, within=10)
        music = said["devices"]["music"] if "devices" in said else said
        await start_session(nurse)
        low = await nurse.wait(alarm("spo2_low"), within=20)
        assert await d.stop() == 0
        d.assert_no_traceback()
    assert first["t"] < 2 * SPEED  # monitoring did not wait for libvlc
    assert music["connected"] is False
    assert "cannot load libvlc" in music["detail"]
    assert len(d.lines_matching(r"music unavailable")) == 1
    assert DESAT + 15 <= low["t"] <= DESAT + 22, low
