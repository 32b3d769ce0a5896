"""The `sessiond` command line (DESIGN §12). Exit 0 on success, 2 on bad input."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from sessiond.errors import ConfigError
from sessiond.model import Route
from sessiond.speed import DEVICE_TIMEOUT_MIN_REAL_S, MAX_DEMO_SPEED

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Sequence

    from sessiond.config import Config
    from sessiond.session.settings import SessionConfig

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with the project's exit code for usage errors (2, as argparse already uses)."""

    def error(self, message: str) -> NoReturn:
        # One line, as for every bad input (DESIGN §6); the usage is one `--help` away.
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message}\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # The width argparse takes from shutil.get_terminal_size(), without importing shutil
        # (and its compression modules) for every command: start-up.
        return argparse.HelpFormatter(prog=self.prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """`shutil.get_terminal_size().columns`: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    try:
        return (stdout is not None and os.get_terminal_size(stdout.fileno()).columns) or 80
    except (ValueError, OSError):
        return 80


class _Version(argparse.Action):
    """`--version`: the version is looked up only when asked for (it takes a while)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from sessiond import __version__

        print(f"sessiond {__version__}")
        parser.exit()


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
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulator + daemon + console, with the embedded defaults",
        description="Run the device simulator on a pseudo-terminal, the daemon reading it "
        "through pyserial, and the console on 127.0.0.1. Data goes to the working directory. "
        "In the built-in scenario the patient is calm until a nurse starts a session and marks "
        "the dose; its events then follow the dose, and one that raises an alarm holds until "
        "the alarm is acknowledged (at most 2 real minutes); then the patient stays calm.",
    )
    demo.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help=f"session time runs this many times faster (default 1, at most {MAX_DEMO_SPEED:g}:"
        " faster, the devices' data outruns a 2-core machine with the console open); above"
        f" 10x, device timeouts stay at least {DEVICE_TIMEOUT_MIN_REAL_S:g} s of real time",
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

    _add_record_commands(sub)

    sub.add_parser(
        "hash-password",
        help="hash a console password for [console.users]",
        description="Read a password (twice) and print the hash to put in "
        "[console.users.NAME] password_hash.",
    )
    _add_install_commands(sub)
    return parser


def _add_install_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    init = sub.add_parser(
        "init",
        help="write a commented config and a first nurse user, for an installation",
        description="Write DIR/sessiond.toml: the room, a first nurse user (asked for, the "
        "password hashed) and the serial ports found under /dev/serial/by-id with a guess at "
        "each device's protocol (oximeters are only listened to).",
    )
    init.add_argument("--dir", type=Path, default=Path(), help="where to write (default .)")
    init.add_argument("--room", default="room-1", help="the room id (default room-1)")
    init.add_argument("--user", default=None, help="the first nurse user (asked if absent)")
    init.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    init.add_argument(
        "--records", type=Path, default=None, help="the record database (default DIR/...)"
    )
    init.add_argument(
        "--serial-dir",
        type=Path,
        default=Path("/dev/serial/by-id"),
        help="where to look for serial ports (default /dev/serial/by-id)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    backup = sub.add_parser(
        "backup",
        help="copy the record safely while the daemon runs",
        description="Copy the record database ([records] path) to OUT with SQLite's online "
        "backup, then check the copy.",
    )
    backup.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    backup.add_argument("--out", type=Path, required=True, help="the new backup file")


def _add_record_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`sessions`, `export`, `report` and `purge`: the record (DESIGN §10, §12)."""
    config_help = (
        "TOML configuration file; its [records] path is the record (default ./sessiond.sqlite)"
    )
    sessions = sub.add_parser(
        "sessions",
        help="list the sessions in the record",
        description="List the sessions in the record: id, room, start, route, dose, end, "
        "duration, alarm occurrences by highest priority (high/medium/low), discharge "
        "readiness at the end and monitoring gaps. Times are local.",
    )
    sessions.add_argument(
        "--since",
        metavar="DATE",
        help="only sessions started at or after DATE (YYYY-MM-DD, or "
        "an ISO date-time; local time unless it has an offset)",
    )
    sessions.add_argument("--room", metavar="ID", help="only the sessions of this room")
    sessions.add_argument("--config", type=Path, default=None, help=config_help)

    export = sub.add_parser(
        "export",
        help="one session's record as CSV, JSON or FHIR R4",
        description="Write one session's record: readings, BP, alarm transitions with values "
        "and limits, nurse actions with users, notes, phases, scene changes, gaps. csv: one "
        "table in time order; json: the session and each table; fhir: a FHIR R4 transaction "
        "Bundle (Encounter, Procedure, Devices, LOINC-coded vital-sign Observations).",
    )
    export.add_argument("session", metavar="SESSION", help="session id (or a unique prefix)")
    export.add_argument("--format", choices=("csv", "json", "fhir"), required=True)
    export.add_argument("--out", type=Path, default=None, help="write here instead of stdout")
    export.add_argument("--config", type=Path, default=None, help=config_help)
    export.add_argument(
        "--patient-ref",
        default=None,
        metavar="REF",
        help="fhir: the patient every resource refers to, e.g. Patient/123 (default "
        "Patient/unmapped, a placeholder for the clinic's integration to map; the record names "
        "no patient)",
    )
    export.add_argument(
        "--fhir-every",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="fhir: one oximetry reading (SpO2, pulse rate) per this many seconds, the first "
        "valid one of each window (default 60; 0: every reading); every BP reading is exported",
    )

    report = sub.add_parser(
        "report",
        help="the printable HTML report of one session",
        description="Write one session's report: a single self-contained HTML file (charts "
        "inline, no script) to open in a browser and print. It holds the SPRAVATO REMS "
        "monitoring-form values, the timeline, SpO2 / pulse / BP charts, the baseline, the "
        "alarm and action log, notes, checklists and discharge readiness.",
    )
    report.add_argument("session", metavar="SESSION", help="session id (or a unique prefix)")
    report.add_argument(
        "--out", type=Path, default=None, metavar="FILE.html", help="write here instead of stdout"
    )
    report.add_argument("--config", type=Path, default=None, help=config_help)

    purge = sub.add_parser(
        "purge",
        help="delete sessions that ended before a date",
        description="Delete every session that ended before DATE, with all it recorded, and "
        "rows of no session from before DATE. Open sessions are kept. Without --before, the "
        "cutoff is [records] keep_days ago. The daemon may keep running.",
    )
    purge.add_argument(
        "--before",
        metavar="DATE",
        help="cutoff (YYYY-MM-DD, or an ISO date-time; local time unless it has an offset)",
    )
    purge.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    purge.add_argument("--config", type=Path, default=None, help=config_help)


def _load(path: Path | None) -> Config:
    # The configuration (pydantic and every part's settings) only for commands that read one.
    from sessiond.config import load_config

    return load_config(path)


def _session_config(path: Path | None) -> SessionConfig:
    """The session's settings of the file at `path` (the whole file validated), or the
    defaults, built without pydantic (replay starts fast)."""
    if path is not None:
        return _load(path)
    from sessiond.session.settings import SessionSettings

    return SessionSettings()


def _until_signalled(main: Coroutine[Any, Any, int]) -> int:
    """Run `main`; SIGINT or SIGTERM cancel it, so that its shutdown runs and it exits 0."""
    import asyncio
    import signal

    async def guarded() -> int:
        task = asyncio.create_task(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return EXIT_OK

    # A file-size limit (RLIMIT_FSIZE) must fail a write, which the recorder reports as a
    # record fault, rather than kill the monitor with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return asyncio.run(guarded())


def _cmd_check_config(args: argparse.Namespace) -> int:
    _load(args.file)
    print(f"{args.file}: ok")
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    import gc

    from sessiond.records.capture import CaptureError, CaptureReader, open_capture
    from sessiond.records.replay import replay

    if args.infusion_end is not None and args.dose_at is None:
        print("sessiond replay: --infusion-end needs --dose-at (the infusion's start)",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    if args.infusion_end is not None and args.infusion_end <= args.dose_at:
        print("sessiond replay: --infusion-end must be after --dose-at", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = _session_config(args.config)
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
        # What start-up made (modules, settings) lives to the end: frozen, the collections
        # that the readings trigger (and numpy's import at the first data) do not walk it.
        gc.freeze()
        stack.callback(gc.unfreeze)
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
    import getpass

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


def _cmd_init(args: argparse.Namespace) -> int:
    import getpass

    from sessiond.console.auth import hash_password
    from sessiond.install import find_ports, write_config

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", args.room):
        print(f"sessiond init: --room {args.room!r}: letters, digits, - and _", file=sys.stderr)
        return EXIT_BAD_INPUT
    user = args.user or input("first nurse user: ").strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", user):
        print(f"sessiond init: user {user!r}: letters, digits, . - and _", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {user}: ")
        if getpass.getpass("again: ") != password:
            print("sessiond init: the two entries differ", file=sys.stderr)
            return EXIT_BAD_INPUT
    if len(password) < 8:  # noqa: PLR2004
        print("sessiond init: use a password of at least 8 characters", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"looking for serial devices in {args.serial_dir} ...", flush=True)
    ports = find_ports(args.serial_dir)
    try:
        path = write_config(
            args.dir,
            room_id=args.room,
            user=user,
            password_hash=hash_password(password),
            ports=ports,
            records_path=args.records,
            force=args.force,
        )
    except OSError as exc:
        print(f"sessiond init: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _load(path)  # what was written is a valid configuration
    print(f"wrote {path}; check it with: sessiond check-config {path}")
    return EXIT_OK


def _cmd_backup(args: argparse.Namespace) -> int:
    import sqlite3

    from sessiond.install import backup

    config = _load(args.config)
    try:
        sessions = backup(Path(config.records.path), args.out)
    except (OSError, sqlite3.Error) as exc:
        print(f"sessiond backup: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{args.out}: {sessions} sessions, integrity ok")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from sessiond.app import check_demo_speed, run_demo

    check_demo_speed(args.speed)
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


def _when(text: str, option: str) -> datetime:
    """A date (local midnight) or an ISO date-time (local unless it has an offset)."""
    try:
        if len(text) == len("YYYY-MM-DD"):
            return datetime.combine(date.fromisoformat(text), time()).astimezone()
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        msg = f"{option}: not a date (YYYY-MM-DD) or an ISO date-time: {text!r}"
        raise ConfigError([msg]) from None


def _record_command(name: str, config: Config, run: Callable[[Path], int]) -> int:
    """Run a record command on `[records] path`; an unusable record is one line and exit 2."""
    import sqlite3

    from sessiond.records.sessions import SessionNotFound
    from sessiond.records.store import RecordError

    path = Path(config.records.path)
    try:
        return run(path)
    except SessionNotFound as exc:
        print(f"sessiond {name}: {path}: {exc}", file=sys.stderr)
    except RecordError as exc:
        print(f"sessiond {name}: {exc}", file=sys.stderr)
    except sqlite3.DatabaseError as exc:
        print(
            f"sessiond {name}: {path}: the record is damaged ({exc}); restore it from a backup",
            file=sys.stderr,
        )
    except OSError as exc:
        print(f"sessiond {name}: {exc.filename or path}: {exc.strerror or exc}", file=sys.stderr)
    return EXIT_BAD_INPUT


@contextlib.contextmanager
def _output(out: Path | None, *, newline: str | None = None) -> Iterator[TextIO]:
    """`--out FILE` (written whole or not at all), or stdout; a reader that goes away early
    (`| head`) is not an error."""
    if out is not None:
        partial = out.with_name(f".{out.name}.partial")
        try:
            with partial.open("w", encoding="utf-8", newline=newline) as stream:
                yield stream
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
        return
    try:
        yield sys.stdout
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _cmd_sessions(args: argparse.Namespace) -> int:
    since = None if args.since is None else _when(args.since, "--since")

    def run(path: Path) -> int:
        from sessiond.records.sessions import listing, open_record

        rows = listing(open_record(path), since=since, room=args.room)
        if len(rows) == 1:
            print(f"no sessions in {path}" + (" that match" if since or args.room else ""))
            return EXIT_OK
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return EXIT_OK

    return _record_command("sessions", _load(args.config), run)


def _cmd_export(args: argparse.Namespace) -> int:
    from sessiond.records import fhir

    patient_ref = args.patient_ref or fhir.DEFAULT_PATIENT_REF
    if not fhir.valid_patient_ref(patient_ref):
        msg = f"--patient-ref: not a FHIR reference such as Patient/123: {patient_ref!r}"
        raise ConfigError([msg])

    def run(path: Path) -> int:
        from sessiond.clock import utc_now
        from sessiond.records.export import Progress, row_count, write_csv, write_json
        from sessiond.records.sessions import find_session, load_session, open_record

        db = open_record(path)
        record = load_session(db, find_session(db, args.session))
        progress = None
        if sys.stderr.isatty() and (args.out is not None or not sys.stdout.isatty()):
            label = f"export {record.session.id}"
            progress = Progress(row_count(record), sys.stderr, label=label)
        with _output(args.out, newline="" if args.format == "csv" else None) as out:
            if args.format == "csv":
                write_csv(record, out, progress=progress)
            elif args.format == "json":
                write_json(record, out, progress=progress)
            else:
                every = fhir.DEFAULT_EVERY_S if args.fhir_every is None else args.fhir_every
                bundle = fhir.bundle(record, now=utc_now(), patient_ref=patient_ref, every_s=every)
                json.dump(bundle, out, indent=1, ensure_ascii=False)
                out.write("\n")
        if progress is not None:
            progress.finish()
        return EXIT_OK

    return _record_command("export", _load(args.config), run)


def _cmd_report(args: argparse.Namespace) -> int:
    def run(path: Path) -> int:
        from sessiond.clock import utc_now
        from sessiond.records.report import report_html
        from sessiond.records.sessions import find_session, load_session, open_record

        db = open_record(path)
        record = load_session(db, find_session(db, args.session))
        text = report_html(record, generated=utc_now())
        with _output(args.out) as out:
            out.write(text)
        return EXIT_OK

    return _record_command("report", _load(args.config), run)


def _cmd_purge(args: argparse.Namespace) -> int:
    config = _load(args.config)
    now = datetime.now(UTC)
    if args.before is not None:
        before = _when(args.before, "--before")
    elif config.records.keep_days > 0:
        before = now - timedelta(days=config.records.keep_days)
    else:
        msg = "--before: required unless [records] keep_days is set (0 keeps every record)"
        raise ConfigError([msg])
    if before > now:
        raise ConfigError([f"--before: {args.before} is in the future; nothing ends after now"])

    def run(path: Path) -> int:
        from sessiond.records.retention import purge
        from sessiond.records.sessions import clock_text

        plan = purge(path, before=before, dry_run=args.dry_run)
        verb = "would delete" if args.dry_run else "deleted"
        n = len(plan.sessions)
        print(
            f"{path}: {verb} {n} session{'s' * (n != 1)} that ended before "
            f"{clock_text(before)}" + (" (dry run: nothing deleted)" if args.dry_run else "")
        )
        for sid, room, started, ended in plan.sessions:
            start, end = datetime.fromisoformat(started), datetime.fromisoformat(ended)
            print(f"  {sid}  {room}  {clock_text(start)} to {clock_text(end)}")
        print("  rows: " + ", ".join(f"{count} {table}" for table, count in plan.rows.items()))
        if plan.kept_open:
            print(f"  kept, still open: {', '.join(plan.kept_open)}")
        if not args.dry_run:
            import logging

            logging.getLogger("sessiond").info(
                "purge: %d sessions that ended before %s deleted from %s: %s",
                n,
                before.isoformat(),
                path,
                ", ".join(s[0] for s in plan.sessions),
            )
        return EXIT_OK

    return _record_command("purge", config, run)


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "sim": _cmd_sim,
    "replay": _cmd_replay,
    "check-config": _cmd_check_config,
    "sessions": _cmd_sessions,
    "export": _cmd_export,
    "report": _cmd_report,
    "purge": _cmd_purge,
    "hash-password": _cmd_hash_password,
    "init": _cmd_init,
    "backup": _cmd_backup,
}


#: Commands that log nothing: `replay` writes its JSON lines and starts without logging.
_SILENT = frozenset({"replay"})


def _setup_logging(*, verbose: bool) -> None:
    """To the journal as structured entries under systemd, else lines on stderr."""
    import logging

    level = logging.DEBUG if verbose else logging.INFO
    # systemd sets $JOURNAL_STREAM; without it, stderr is no journal (and the command starts
    # without sockets and asyncio).
    if os.environ.get("JOURNAL_STREAM"):
        from sessiond.service import JournalHandler, journal_wanted

        if journal_wanted():
            logging.basicConfig(level=level, handlers=[JournalHandler()])
            return
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in _SILENT:
        _setup_logging(verbose=args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_OK
