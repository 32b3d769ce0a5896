"""The `sessiond` command line (DESIGN §12). Exit 0 on success, 2 on bad input."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sessiond import __version__
from sessiond.config import ConfigError, load_config
from sessiond.model import Route

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from sessiond.config import Config

logger = logging.getLogger("sessiond")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with the project's exit code for usage errors (2, as argparse already uses)."""

    def error(self, message: str) -> NoReturn:
        # One line, as for every bad input (DESIGN §6); the usage is one `--help` away.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message}\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 < value < math.inf:
        msg = f"must be a positive finite number: {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    from sessiond.records.capture import parse_seconds

    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sessiond",
        description="In-session monitoring and set-and-setting controller for one therapy room.",
    )
    parser.add_argument("--version", action="version", version=f"sessiond {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulator + daemon + console, with the embedded defaults",
        description="Run the device simulator on a pseudo-terminal, the daemon reading it "
        "through pyserial, and the console on 127.0.0.1. Data goes to the working directory.",
    )
    demo.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="session time runs this many times faster (default 1)",
    )
    demo.add_argument(
        "--port", type=int, default=None, help="console port (default: [console] port, 8080)"
    )
    demo.add_argument("--config", type=Path, default=None, help="TOML configuration file")

    run = sub.add_parser(
        "run",
        help="the daemon on real devices",
        description="Run the daemon on the serial devices of the configuration.",
    )
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.add_argument(
        "--capture",
        type=Path,
        default=None,
        help="record every byte of every port to this capture file",
    )

    sim = sub.add_parser(
        "sim",
        help="the device simulator alone",
        description="Serve simulated bedside devices on pseudo-terminals, each in its real "
        "protocol, and print one line per device: PORT PATH PROTOCOL. Plays the scenario to "
        "its end (or Ctrl-C). Devices come from --devices, else the scenario's [devices] "
        "table, else spo2=masimo-ascii1,nibp=suntech-advantage.",
    )
    sim.add_argument(
        "--scenario",
        default=None,
        metavar="FILE",
        help="scenario file, or the name of a built-in one such as cable_pull "
        "(default: the built-in demo scenario)",
    )
    sim.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="run this many times faster than real time (default 1)",
    )
    sim.add_argument(
        "--capture",
        type=Path,
        default=None,
        help="write every byte of every port, both directions, to this capture file",
    )
    sim.add_argument(
        "--devices",
        default=None,
        metavar="PORT=PROTOCOL,...",
        help="the devices to serve, e.g. spo2=nonin-df7,nibp=suntech-advantage; protocols: "
        "masimo-ascii1, nonin-df7, contec-v7, suntech-advantage",
    )
    sim.add_argument(
        "--link-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="serve each device under a stable name DIR/PORT (a symlink to its pty, like "
        "/dev/serial/by-id) that survives a cable_pull; default: the pty paths, or a "
        "temporary directory when the scenario pulls a cable",
    )
    sim.add_argument(
        "--nibp-every",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="also act as the host of each NIBP module: measure every SECONDS of session time "
        "from the start, so that a capture made without a daemon has BP readings (leave out "
        "when a daemon drives the module)",
    )

    rep = sub.add_parser(
        "replay",
        help="run a capture through the monitor on virtual time",
        description="Replay a capture file through the daemon's decoders, "
        "timeline and alarm engine; write JSON Lines events (DESIGN §6).",
    )
    rep.add_argument("capture", type=Path, help="capture file")
    rep.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    rep.add_argument(
        "--route",
        choices=[r.value for r in Route],
        default=Route.IV.value,
        help="administration route (default iv)",
    )
    rep.add_argument(
        "--dose-at",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="mark the dose this many seconds after the capture start",
    )
    rep.add_argument(
        "--infusion-end",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="the dose at --dose-at is the start of an infusion stopped this many seconds "
        "after the capture start",
    )
    rep.add_argument(
        "--end-at",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop at this time (default: the last record)",
    )
    rep.add_argument("--readings", action="store_true", help="also write every reading")
    rep.add_argument("--out", type=Path, default=None, help="write here instead of stdout")

    check = sub.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate a configuration file without running.",
    )
    check.add_argument("file", type=Path, help="TOML configuration file")

    sub.add_parser(
        "hash-password",
        help="hash a console password for [console.users]",
        description="Read a password (twice) and print the hash to put in "
        "[console.users.NAME] password_hash.",
    )
    return parser


def _load(path: Path | None) -> Config:
    return load_config(path)


def _until_signalled(main: Coroutine[Any, Any, int]) -> int:
    """Run `main`; SIGINT or SIGTERM cancel it, so that its shutdown runs and it exits 0."""

    async def guarded() -> int:
        task = asyncio.create_task(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return EXIT_OK

    return asyncio.run(guarded())


def _cmd_check_config(args: argparse.Namespace) -> int:
    _load(args.file)
    print(f"{args.file}: ok")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from sessiond.records.capture import CaptureError, CaptureReader, open_capture
    from sessiond.records.replay import replay

    if args.infusion_end is not None and args.dose_at is None:
        print("sessiond replay: --infusion-end needs --dose-at (the infusion's start)",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if args.infusion_end is not None and args.infusion_end <= args.dose_at:
        print("sessiond replay: --infusion-end must be after --dose-at", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = _load(args.config)
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(open_capture(args.capture))
            out = (
                stack.enter_context(args.out.open("w", encoding="utf-8"))
                if args.out
                else sys.stdout
            )
        except OSError as exc:
            print(f"sessiond replay: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            reader = CaptureReader(stream)
            replay(
                reader,
                config=config,
                route=Route(args.route),
                dose_at=args.dose_at,
                infusion_end=args.infusion_end,
                end_at=args.end_at,
                readings=args.readings,
                write=out.write,
            )
        except CaptureError as exc:
            print(f"sessiond replay: {args.capture}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return EXIT_OK


def _cmd_hash_password(_: argparse.Namespace) -> int:
    from sessiond.console.auth import hash_password

    first = getpass.getpass("password: ")
    if len(first) < 8:  # noqa: PLR2004
        print("sessiond hash-password: use at least 8 characters", file=sys.stderr)
        return EXIT_BAD_INPUT
    if getpass.getpass("again: ") != first:
        print("sessiond hash-password: the two entries differ", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(hash_password(first))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from sessiond.app import run_demo

    config = _load(args.config)
    return _until_signalled(run_demo(config, speed=args.speed, port=args.port))


def _cmd_run(args: argparse.Namespace) -> int:
    from sessiond.app import run_daemon

    config = _load(args.config)
    missing = [name for name, dev in config.devices.items() if not dev.path]
    if missing:
        raise ConfigError(
            [
                f"{args.config}: devices.{name}.path: required to run on real devices"
                for name in missing
            ]
        )
    return _until_signalled(run_daemon(config, capture=args.capture))


def _cmd_sim(args: argparse.Namespace) -> int:
    from sessiond.sim.devices import parse_devices
    from sessiond.sim.scenario import builtin_scenario, find_scenario
    from sessiond.sim.simulator import run_sim

    scenario = find_scenario(args.scenario) if args.scenario else builtin_scenario("demo")
    devices = parse_devices(args.devices) if args.devices else None
    if args.link_dir is not None and not args.link_dir.is_dir():
        raise ConfigError([f"--link-dir: {args.link_dir}: not a directory"])
    return _until_signalled(
        run_sim(
            scenario=scenario,
            speed=args.speed,
            devices=devices,
            capture=args.capture,
            link_dir=args.link_dir,
            nibp_every_s=args.nibp_every,
        )
    )


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "sim": _cmd_sim,
    "replay": _cmd_replay,
    "check-config": _cmd_check_config,
    "hash-password": _cmd_hash_password,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK
