"""`sessiond --help` imports only the command line: no configuration models, no room parts."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "numpy", "aiohttp", "aiomqtt", "vlc", "serial", "sessiond.config")


def test_help_loads_none_of_the_heavy_modules() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from sessiond.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
