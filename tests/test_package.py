"""Installed as a package: the wheel carries what the daemon needs at run time, and an install
outside the source tree finds its playlists and configuration from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "sessiond" / "console" / "static"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("sessiond-*.whl")
    return path


def test_the_wheel_carries_playlists_config_console_and_deploy_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "sessiond/py.typed",
        "sessiond/_data/sessiond.toml",
        "sessiond/_data/deploy/sessiond.service",
        "sessiond/_data/deploy/mosquitto/sessiond.acl",
        "sessiond/console/static/index.html",
        "sessiond/console/static/overview.html",
        "sessiond/console/static/main.js",
        "sessiond/console/static/vendor/uplot/uPlot.iife.min.js",
        "sessiond/sim/scenarios/demo.toml",
        "sessiond/room/ambient.py",
    } | {f"sessiond/_data/playlists/{phase}.m3u" for phase in
         ("baseline", "onset", "effect", "recovery")}  # fmt: skip
    # Every module of the page (main.js imports the rest).
    expected |= {f"sessiond/console/static/{p.name}" for p in STATIC.glob("*.js")}
    assert expected - names == set()
    assert not [n for n in names if n.endswith((".wav", ".sqlite", ".pyc"))]


def test_an_install_outside_the_checkout_finds_what_it_ships(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout

    where = run(
        "-c",
        "import sessiond, sessiond.shipped as s;"
        "print(sessiond.__file__); print(s.playlists_dir()); print(s.config_example())",
    )
    module, playlists, example = where.split()
    for path in (module, playlists, example):
        assert path.startswith(str(target)), path
    assert run("-m", "sessiond", "--version").startswith("sessiond ")
    assert run("-m", "sessiond", "check-config", example).strip().endswith(": ok")
    # The default music settings need no path: the shipped playlists are copied to the cache.
    copied = run(
        "-c",
        "from sessiond.room.music import AMBIENT_DIR, copy_shipped_playlists;"
        "copy_shipped_playlists(AMBIENT_DIR); print(AMBIENT_DIR)",
    ).strip()
    assert copied.startswith(str(tmp_path / "cache"))
    assert sorted(p.name for p in Path(copied).glob("*.m3u")) == [
        "baseline.m3u", "effect.m3u", "onset.m3u", "recovery.m3u"]  # fmt: skip
