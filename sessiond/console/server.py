"""The nurse console: HTTP API, live WebSocket and the static page, served by aiohttp.

Vitals are health data: viewing the room (status, WebSocket) needs a sign-in as much as the
commands do (the session, alarm audio, BP, notes, the room's scene and volume), and each
command is attributed to the signed-in user. The page itself is only the sign-in form until
then. Every request must name this console in its Host header (a DNS-rebinding page under
another name reads nothing), failed sign-ins lock a name for a while, and the number of live
connections is capped. Every WebSocket has its own small bus subscription, so a slow or
stuck browser drops its own oldest readings and never holds the monitor or other browsers up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import math
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from aiohttp import WSCloseCode, hdrs, web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from yarl import URL

from sessiond.console.auth import TOKEN_TTL_S, LoginThrottle, Sessions, verify_password
from sessiond.console.settings import ConsoleConfig
from sessiond.model import DoseUnit, NurseAction, Phase, Route, Waveform
from sessiond.session.commands import (
    CommandRejected,
    ConsoleControl,
    RecordUnavailable,
    describe_invalid,
)
from sessiond.session.infusion import MAX_AMOUNT, MAX_PLANNED_MIN
from sessiond.session.monitor import MAX_NOTE_CHARS
from sessiond.session.settings import AudioConfig, ChecklistsConfig, NibpConfig, TimelineConfig
from sessiond.status import RoomStatus
from sessiond.wire import event_json, public_action_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from aiohttp.typedefs import Handler

    from sessiond.bus import Bus, Subscription
    from sessiond.console.overview import Overview
    from sessiond.console.settings import ConsoleUser
    from sessiond.model import Event
    from sessiond.records.read import RecordReader

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: The type the page's scripts (native ES modules, and uPlot) are served with (RFC 9239).
JS_CONTENT_TYPE = "text/javascript"
COOKIE_NAME = "sessiond_console"
#: Real seconds between `tick` messages that carry the session clock to the page.
TICK_S = 1.0
#: Readings queued per browser before its oldest are dropped (a few seconds at 75 Hz).
WS_QUEUE_READINGS = 256
#: A browser that stops answering pings for half of this is disconnected.
WS_HEARTBEAT_S = 20.0
#: How long a closing WebSocket waits for the browser's close frame (or a blocked send).
WS_CLOSE_TIMEOUT_S = 2.0
#: JSON commands are tiny; anything bigger is refused before it is read.
MAX_BODY_BYTES = 64 * 1024
#: PBKDF2 verifications running at once: a burst of sign-ins cannot take every core.
LOGIN_CONCURRENCY = 2
#: Longest dose-gate override reason (it goes into the record with the dose).
MAX_REASON_CHARS = 500
#: Messages a WebSocket sends before letting the rest of the loop run.
_YIELD_EVERY = 32
#: Pleth samples go to the page in batches this often (real seconds): a smooth waveform
#: at a small fraction of the messages one per reading would take.
PLETH_BATCH_S = 0.25
#: Samples per device in one batch at most (a few seconds at 75 Hz); older ones are dropped
#: (at simulation speed more arrive than a page can draw).
PLETH_MAX_SAMPLES = 512
#: Trend points a page may ask for per series.
TREND_POINTS = 600
#: A client address may fail this many times the per-user limit (it may try many names).
ADDRESS_FAILURE_FACTOR = 4
#: The WebSocket close code for a sign-in that ended (expired or signed out elsewhere).
WS_SIGNED_OUT = 4401
#: Names every console answers to: the machine itself.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_M = TypeVar("_M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Login(_Body):
    user: str = Field(min_length=1, max_length=128)
    password: str = Field(max_length=1024)


class _Start(_Body):
    route: Route


class _Empty(_Body):
    """A command with no arguments (end the session, pause audio, measure BP)."""


class _Dose(_Body):
    #: Needed only to override a high `dose_gate`; it goes into the record, never the logs.
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, strict=True)


#: An amount in mg or mg/kg: finite, never negative; the monitor checks the unit's bound.
_Amount = Annotated[
    float, Field(ge=0, le=max(MAX_AMOUNT.values()), allow_inf_nan=False, strict=True)
]
_Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REASON_CHARS),
    Field(strict=True),
]


class _InfusionStart(_Body):
    """The start of an infusion is the dose: its plan, and a reason over a high dose gate."""

    amount: _Amount = Field(gt=0)
    unit: DoseUnit
    planned_min: float = Field(gt=0, le=MAX_PLANNED_MIN, allow_inf_nan=False, strict=True)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, strict=True)


class _InfusionReason(_Body):
    """A pause or a resume: its reason goes into the record, never the logs."""

    reason: _Reason


class _InfusionStop(_Body):
    amount: _Amount
    #: None: the plan's unit.
    unit: DoseUnit | None = None
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, strict=True)


class _Ack(_Body):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")


class _Note(_Body):
    text: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NOTE_CHARS),
        Field(strict=True),
    ]


class _Scene(_Body):
    #: A scene from config; None (JSON null) follows the phase again.
    scene: str | None = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", strict=True)
    pinned: bool = Field(default=False, strict=True)


class _Volume(_Body):
    volume: int = Field(ge=0, le=100, strict=True)
    pinned: bool = Field(default=False, strict=True)


#: Side effects a nurse records by hand (common after ketamine; clinical.md §2).
SideEffect = Literal[
    "nausea", "vomiting", "dissociation", "anxiety", "agitation", "dizziness", "headache",
    "sedation", "hypersalivation", "hallucinations", "other",
]  # fmt: skip
_FreeText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=MAX_REASON_CHARS), Field(strict=True)
]


class _BpEntry(_Body):
    kind: Literal["bp"]
    sys: int = Field(ge=40, le=300, strict=True)
    dia: int = Field(ge=20, le=250, strict=True)
    map: int | None = Field(default=None, ge=30, le=280, strict=True)
    pr: int | None = Field(default=None, ge=20, le=250, strict=True)


class _SideEffectEntry(_Body):
    kind: Literal["side_effect"]
    effect: SideEffect
    severity: Literal["mild", "moderate", "severe"]
    text: _FreeText = ""


class _DoseEntry(_Body):
    kind: Literal["dose"]
    route: Route
    amount_mg: float = Field(gt=0, le=1000, strict=True)
    drug: str = Field(default="ketamine", pattern=r"^[A-Za-z][A-Za-z -]{0,39}$", strict=True)
    text: _FreeText = ""


class _Entry(_Body):
    entry: Annotated[_BpEntry | _SideEffectEntry | _DoseEntry, Field(discriminator="kind")]


class _Checklist(_Body):
    kind: Literal["predose", "discharge"]
    checked: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]] = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS, strict=True)


class _ApiError(Exception):
    """An API failure answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Console:
    """Per-app state: the folded room status, sign-ins and the open WebSockets."""

    def __init__(
        self,
        *,
        bus: Bus,
        control: ConsoleControl,
        users: Mapping[str, ConsoleUser],
        room_id: str,
        timeline: TimelineConfig,
        nibp: NibpConfig,
        settings: ConsoleConfig,
        audio: AudioConfig,
        on_watchers: Callable[[int], None] | None,
        checklists: ChecklistsConfig,
        records: RecordReader | None,
        predose_gate: bool,
        pleth_rates: Mapping[str, float],
        overview: Overview | None,
    ) -> None:
        self.pleth_rates = dict(pleth_rates)
        self.overview = overview
        self.records = records
        self._predose_gate = predose_gate
        self._checklists = {
            kind: [dataclasses.asdict(item) for item in getattr(checklists, kind)]
            for kind in ("predose", "discharge")
        }
        self.bus = bus
        self.on_watchers = on_watchers
        self.control = control
        self.users = users
        self.settings = settings
        self.status = RoomStatus(room_id)
        self.sessions = Sessions()
        self.sockets: set[web.WebSocketResponse] = set()
        #: Handshakes under way, counted against `max_websockets` with the open sockets.
        self.opening = 0
        self.login_slots = asyncio.Semaphore(LOGIN_CONCURRENCY)
        self.throttle = LoginThrottle(
            max_failures=settings.login_max_failures, lockout_s=settings.login_lockout_s
        )
        self.allowed_hosts = allowed_hosts(settings)
        #: Under TLS the sign-in cookie never travels in clear.
        self.secure_cookie = bool(settings.tls_cert)
        # Unknown users are checked against a real hash too, so timing does not reveal names.
        self.decoy_hash = next((u.password_hash for u in users.values()), None)
        self._timeline = {
            route.value: dataclasses.asdict(timeline.for_route(route)) for route in Route
        }
        self._nibp_schedule = _nibp_schedule(nibp)
        self._audio = {"pause_s": audio.pause_s, "reminder_s": audio.reminder_s}
        self._ws_ids = itertools.count(1)
        self._sub: Subscription | None = None
        self._fold_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sub = self.bus.subscribe("console.status")
        self._fold_task = asyncio.create_task(self._fold(self._sub), name="sessiond.console.status")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._fold_task is not None:
            await self._fold_task

    async def _fold(self, sub: Subscription) -> None:
        async for event in sub:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        try:
            self.status.apply(event)
        except Exception:
            logger.exception("console: cannot fold %r into the room status", event)

    def snapshot(self) -> dict[str, Any]:
        """The room status now, with every event published so far folded in."""
        if self._sub is not None:
            while (event := self._sub.get_nowait()) is not None:
                self._apply(event)
        out = self.status.snapshot(self.control.now())
        # Phase windows per route (minutes after the dose), for the page's window bar.
        out["timeline"] = self._timeline
        # The BP programme, so the page can say when the next scheduled reading is due.
        out["nibp_schedule"] = self._nibp_schedule
        # How the page sounds alarms (its reminder follows the daemon's setting).
        out["alarm_audio"] = self._audio
        # The clinic's checklists (the items; what was confirmed is in `checklists`).
        out["checklist_items"] = self._checklists
        out["predose_gate"] = self._predose_gate and bool(self._checklists["predose"])
        return out

    def watchers_changed(self) -> None:
        """Tell the daemon how many signed-in pages watch the room (`console_unwatched`)."""
        if self.on_watchers is not None:
            try:
                self.on_watchers(len(self.sockets))
            except Exception:
                logger.exception("console: the watcher count could not be reported")

    def subscribe_socket(self) -> Subscription:
        return self.bus.subscribe(
            f"console.ws{next(self._ws_ids)}", maxsize=WS_QUEUE_READINGS, waveforms=True
        )


def _nibp_schedule(nibp: NibpConfig) -> dict[str, Any]:
    intervals = {phase.value: nibp.interval_s(phase) for phase in Phase}
    return {
        "interval_min": {
            phase: seconds / 60.0 for phase, seconds in intervals.items() if seconds is not None
        },
        "forced_after_dose_min": list(nibp.forced_after_dose_min),
        "infusion_interval_min": nibp.infusion_interval_min,
    }


CONSOLE = web.AppKey("sessiond.console", _Console)


def allowed_hosts(settings: ConsoleConfig) -> frozenset[str]:
    """The host names a request may name: loopback, the bound address, and `allowed_hosts`."""
    names = set(LOOPBACK_NAMES) | {name.lower() for name in settings.allowed_hosts}
    host = settings.host.lower()
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified  # 0.0.0.0 is no name
    except ValueError:
        wildcard = not host
    if not wildcard:
        names.add(host)
    return frozenset(names)


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the console on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(settings: ConsoleConfig) -> ssl.SSLContext | None:
    """The server's TLS context from `tls_cert` and `tls_key`, or None when not configured."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def create_console_app(
    *,
    bus: Bus,
    control: ConsoleControl,
    users: Mapping[str, ConsoleUser],
    room_id: str,
    timeline: TimelineConfig | None = None,
    nibp: NibpConfig | None = None,
    settings: ConsoleConfig | None = None,
    audio: AudioConfig | None = None,
    on_watchers: Callable[[int], None] | None = None,
    checklists: ChecklistsConfig | None = None,
    records: RecordReader | None = None,
    predose_gate: bool = False,
    pleth_rates: Mapping[str, float] | None = None,
    overview: Overview | None = None,
) -> web.Application:
    """The console as an aiohttp application; it follows `bus` while it runs.

    `on_watchers` is told the number of signed-in pages connected whenever it changes.
    """
    app = web.Application(
        middlewares=[_host_middleware, _api_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[CONSOLE] = _Console(
        bus=bus,
        control=control,
        users=users,
        room_id=room_id,
        timeline=timeline or TimelineConfig(),
        nibp=nibp or NibpConfig(),
        settings=settings or ConsoleConfig(),
        audio=audio or AudioConfig(),
        on_watchers=on_watchers,
        checklists=checklists or ChecklistsConfig(),
        records=records,
        predose_gate=predose_gate,
        pleth_rates=pleth_rates or {},
        overview=overview,
    )
    app.cleanup_ctx.append(_status_ctx)
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _index)
    app.router.add_get("/overview", _overview_page)
    app.router.add_get("/api/overview", _overview)
    app.router.add_get("/api/status", _status)
    app.router.add_get("/api/me", _me)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/logout", _logout)
    app.router.add_post("/api/session/start", _start_session)
    app.router.add_post("/api/session/dose", _mark_dose)
    app.router.add_post("/api/session/end", _end_session)
    app.router.add_post("/api/infusion/start", _start_infusion)
    app.router.add_post("/api/infusion/pause", _pause_infusion)
    app.router.add_post("/api/infusion/resume", _resume_infusion)
    app.router.add_post("/api/infusion/stop", _stop_infusion)
    app.router.add_post("/api/alarms/ack", _acknowledge)
    app.router.add_post("/api/alarms/pause", _pause_audio)
    app.router.add_post("/api/nibp/measure", _measure_nibp)
    app.router.add_post("/api/notes", _add_note)
    app.router.add_post("/api/entries", _add_entry)
    app.router.add_post("/api/checklists", _confirm_checklist)
    app.router.add_get("/api/session/entries", _session_entries)
    app.router.add_get("/api/session/trend", _session_trend)
    app.router.add_post("/api/room/scene", _set_scene)
    app.router.add_post("/api/room/volume", _set_volume)
    app.router.add_get("/ws", _websocket)
    app.router.add_static("/static/", STATIC_DIR)
    return app


async def start_console(
    app: web.Application, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host:port` (0: an ephemeral port); returns the runner and the bound port."""
    # on_shutdown closes the WebSockets, so handlers finish well within this.
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    scheme = "http" if ssl_context is None else "https"
    logger.info("console: serving on %s://%s:%d/", scheme, host, bound)
    if ssl_context is None and not is_loopback(host):
        logger.warning(
            "console: bound to %s without TLS: passwords, the sign-in cookie and vitals cross "
            "the network in clear; set [console] tls_cert and tls_key",
            host,
        )
    return runner, bound


async def _status_ctx(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    console.start()
    try:
        yield
    finally:
        await console.stop()


async def _close_sockets(app: web.Application) -> None:
    sockets = list(app[CONSOLE].sockets)
    if sockets:
        await asyncio.gather(*(_close_socket(ws) for ws in sockets))


async def _close_socket(ws: web.WebSocketResponse) -> None:
    # A browser that stopped reading blocks the close frame; close() then drops the connection.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WS_CLOSE_TIMEOUT_S):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"console shutting down")


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if isinstance(response, web.FileResponse) and request.path.endswith(".js"):
        # The page's modules run only with a JavaScript type (nosniff above); aiohttp guesses
        # from Python's table, which says application/javascript before 3.12: name the standard.
        response.content_type = JS_CONTENT_TYPE
    # Live data must never come from a cache; assets are revalidated so upgrades show at once.
    api = request.path.startswith("/api/")
    headers.setdefault(hdrs.CACHE_CONTROL, "no-store" if api else "no-cache")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _host_name(request: web.Request) -> str | None:
    """The host name the request's Host header names, without its port; None if absent."""
    header = request.headers.get(hdrs.HOST)
    if not header:
        return None
    try:
        host = URL(f"http://{header}").host
    except ValueError:
        return None
    return None if host is None else host.lower()


@web.middleware
async def _host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # DNS rebinding: evil.example resolving to this console would otherwise be same-origin.
    if _host_name(request) not in request.app[CONSOLE].allowed_hosts:
        return _error(421, "this console does not answer to that host name")
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """Whether a browser request comes from this console's own page (no Origin: not a browser)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    try:
        theirs = URL(origin)
        ours = URL(f"{request.scheme}://{request.host}")
    except ValueError:
        return False
    return (theirs.scheme, theirs.host, theirs.port) == (ours.scheme, ours.host, ours.port)


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == hdrs.METH_POST:
        # With the SameSite=Strict cookie, a cheap guard against cross-site requests.
        if not _same_origin(request):
            return _error(403, "cross-origin request refused")
        if request.content_type != "application/json":
            return _error(415, "Content-Type must be application/json")
    try:
        return await handler(request)
    except _ApiError as exc:
        return _error(exc.status, exc.message, exc.headers)
    except RecordUnavailable as exc:  # the record cannot be written: the reason says what
        return _error(503, exc.reason)
    except CommandRejected as exc:  # refused by the session: nothing was changed
        return _error(409, exc.reason)


async def _body(request: web.Request, model: type[_M]) -> _M:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _ApiError(413, "body: too large") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _ApiError(400, describe_invalid(exc, whole="body")) from None


def _user(request: web.Request) -> str | None:
    """The signed-in user of `request`, or None."""
    console = request.app[CONSOLE]
    token = request.cookies.get(COOKIE_NAME)
    user = None if token is None else console.sessions.user_for(token)
    return user if user is not None and user in console.users else None


def _signed_in(request: web.Request) -> str:
    user = _user(request)
    if user is None:
        raise _ApiError(401, "not signed in")
    return user


async def _index(_request: web.Request) -> web.FileResponse:
    # Only the page's code: it shows nothing of the room until the nurse signs in.
    return web.FileResponse(STATIC_DIR / "index.html")


async def _overview_page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "overview.html")


async def _overview(request: web.Request) -> web.Response:
    """Every room on the broker (the clinic overview); empty without MQTT."""
    _signed_in(request)
    overview = request.app[CONSOLE].overview
    rooms = [] if overview is None else overview.snapshot()
    return web.json_response({"mqtt": overview is not None, "rooms": rooms})


async def _status(request: web.Request) -> web.Response:
    _signed_in(request)
    return web.json_response(request.app[CONSOLE].snapshot())


async def _me(request: web.Request) -> web.Response:
    # Signed out is an answer, not an error: a signed-out page logs nothing.
    return web.json_response({"user": _user(request)})


def _wait_text(seconds: float) -> str:
    if seconds < 60:  # noqa: PLR2004 - a minute
        return f"{math.ceil(seconds)} s"
    return f"{math.ceil(seconds / 60)} min"


def _locked(console: _Console, user_key: str, address_key: str) -> float:
    throttle = console.throttle
    return max(
        throttle.locked_for(user_key),
        throttle.locked_for(address_key, limit=throttle.max_failures * ADDRESS_FAILURE_FACTOR),
    )


def _lockout_error(wait_s: float) -> _ApiError:
    return _ApiError(
        429,
        f"too many failed sign-ins: sign-in is locked, try again in {_wait_text(wait_s)}",
        headers={hdrs.RETRY_AFTER: str(math.ceil(wait_s))},
    )


async def _login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    body = await _body(request, _Login)
    user_key, address_key = f"user:{body.user}", f"address:{request.remote}"
    wait_s = _locked(console, user_key, address_key)
    if wait_s > 0:
        # Locked: not even the right password is checked (nor its time spent).
        raise _lockout_error(wait_s)
    user = console.users.get(body.user)
    stored = user.password_hash if user is not None else console.decoy_hash
    ok = False
    if stored is not None:
        async with console.login_slots:
            # PBKDF2 is ~0.3 s of CPU: off the event loop, which also runs the monitor.
            ok = await asyncio.to_thread(verify_password, body.password, stored)
    if user is None or not ok:
        console.throttle.failed(user_key)
        console.throttle.failed(address_key)
        # What was typed as a user name may be a password: only known names are logged.
        shown = repr(body.user) if user else "an unknown user"
        logger.warning("console: failed sign-in for %s from %s", shown, request.remote)
        wait_s = _locked(console, user_key, address_key)
        if wait_s > 0:
            logger.warning("console: sign-in for %s locked for %.0f s", shown, wait_s)
            raise _lockout_error(wait_s)
        raise _ApiError(401, "wrong user name or password")
    console.throttle.succeeded(user_key)
    response = web.json_response({"user": body.user})
    response.set_cookie(
        COOKIE_NAME,
        console.sessions.issue(body.user),
        max_age=TOKEN_TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=console.secure_cookie,
    )
    logger.info("console: %r signed in", body.user)
    return response


async def _logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    token = request.cookies.get(COOKIE_NAME)
    if token is not None:
        console.sessions.revoke(token)
    response = web.json_response({})
    response.del_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=console.secure_cookie
    )
    return response


async def _start_session(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Start)
    console = request.app[CONSOLE]
    session_id = await console.control.start_session(route=body.route, user=user, source="console")
    logger.info("console: %r started session %s (%s)", user, session_id, body.route.value)
    return web.json_response({"session_id": session_id})


async def _mark_dose(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Dose)
    reason = (body.reason or "").strip() or None
    await request.app[CONSOLE].control.mark_dose(user=user, source="console", reason=reason)
    # The reason may name the patient: it is in the record, not in the log.
    logger.info("console: %r marked the dose%s", user, " (gate overridden)" * bool(reason))
    return web.json_response({})


async def _start_infusion(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _InfusionStart)
    reason = (body.reason or "").strip() or None
    await request.app[CONSOLE].control.start_infusion(
        amount=body.amount,
        unit=body.unit,
        planned_min=body.planned_min,
        user=user,
        source="console",
        reason=reason,
    )
    logger.info("console: %r started the infusion%s", user, " (gate overridden)" * bool(reason))
    return web.json_response({})


async def _pause_infusion(request: web.Request) -> web.Response:
    return await _infusion_step(request, resume=False)


async def _resume_infusion(request: web.Request) -> web.Response:
    return await _infusion_step(request, resume=True)


async def _infusion_step(request: web.Request, *, resume: bool) -> web.Response:
    """A pause or a resume: both take a reason, which stays in the record (not the log)."""
    user = _signed_in(request)
    body = await _body(request, _InfusionReason)
    control = request.app[CONSOLE].control
    step = control.resume_infusion if resume else control.pause_infusion
    await step(reason=body.reason, user=user, source="console")
    logger.info("console: %r %s the infusion", user, "resumed" if resume else "paused")
    return web.json_response({})


async def _stop_infusion(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _InfusionStop)
    reason = (body.reason or "").strip() or None
    await request.app[CONSOLE].control.stop_infusion(
        amount=body.amount, unit=body.unit, user=user, source="console", reason=reason
    )
    logger.info("console: %r stopped the infusion", user)
    return web.json_response({})


async def _end_session(request: web.Request) -> web.Response:
    user = _signed_in(request)
    await _body(request, _Empty)
    await request.app[CONSOLE].control.end_session(user=user, source="console")
    logger.info("console: %r ended the session", user)
    return web.json_response({})


async def _acknowledge(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Ack)
    await request.app[CONSOLE].control.acknowledge(alarm_id=body.id, user=user, source="console")
    logger.info("console: %r acknowledged %s", user, body.id)
    return web.json_response({})


async def _pause_audio(request: web.Request) -> web.Response:
    user = _signed_in(request)
    await _body(request, _Empty)
    await request.app[CONSOLE].control.pause_audio(user=user, source="console")
    logger.info("console: %r paused alarm audio", user)
    return web.json_response({})


async def _measure_nibp(request: web.Request) -> web.Response:
    user = _signed_in(request)
    await _body(request, _Empty)
    await request.app[CONSOLE].control.measure_nibp(user=user, source="console")
    logger.info("console: %r asked for a BP measurement", user)
    return web.json_response({})


async def _add_note(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Note)
    await request.app[CONSOLE].control.add_note(text=body.text, user=user, source="console")
    # The text may name the patient: it is in the record, never in the log.
    logger.info("console: %r added a note", user)
    return web.json_response({})


async def _add_entry(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Entry)
    entry = body.entry.model_dump(mode="json", exclude_none=True)
    if entry.get("text") == "":
        del entry["text"]
    if isinstance(body.entry, _BpEntry) and body.entry.dia >= body.entry.sys:
        raise _ApiError(400, "dia: must be below sys")
    await request.app[CONSOLE].control.add_entry(entry=entry, user=user, source="console")
    # Any text may name the patient: it is in the record, never in the log.
    logger.info("console: %r added a %s entry", user, entry["kind"])
    return web.json_response({})


async def _confirm_checklist(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Checklist)
    reason = (body.reason or "").strip() or None
    await request.app[CONSOLE].control.checklist(
        kind=body.kind, checked=list(body.checked), reason=reason, user=user, source="console"
    )
    logger.info("console: %r confirmed the %s checklist", user, body.kind)
    return web.json_response({})


async def _session_entries(request: web.Request) -> web.Response:
    """The current session's notes and entries, read back from the record (with their text:
    only signed-in nurses see this)."""
    _signed_in(request)
    console = request.app[CONSOLE]
    session_id = _session_id(console)
    if console.records is None or session_id is None:
        return web.json_response({"session_id": None, "entries": []})
    entries = await console.records.entries(session_id)
    return web.json_response({"session_id": session_id, "entries": entries})


async def _session_trend(request: web.Request) -> web.Response:
    """The current (or last) session's vitals, phases and alarms, read from the record and
    downsampled to `points` (a reloaded page draws the whole session again)."""
    _signed_in(request)
    console = request.app[CONSOLE]
    try:
        points = int(request.query.get("points", TREND_POINTS))
    except ValueError:
        raise _ApiError(400, "points: must be a whole number") from None
    if not 10 <= points <= TREND_POINTS * 4:  # noqa: PLR2004 - a readable minimum
        raise _ApiError(400, f"points: must be 10-{TREND_POINTS * 4}")
    session_id = _session_id(console)
    if console.records is None or session_id is None:
        return web.json_response({"session_id": None, "found": False})
    return web.json_response(await console.records.trend(session_id, points=points))


def _session_id(console: _Console) -> str | None:
    session = console.snapshot()["session"]
    return None if session is None else str(session["id"])


async def _set_scene(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Scene)
    await request.app[CONSOLE].control.set_scene(
        scene=body.scene, pinned=body.pinned, user=user, source="console"
    )
    logger.info(
        "console: %r set the scene to %s%s",
        user,
        body.scene or "the phase's own",
        " (pinned)" * body.pinned,
    )
    return web.json_response({})


async def _set_volume(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _Volume)
    await request.app[CONSOLE].control.set_volume(
        volume_pct=body.volume, pinned=body.pinned, user=user, source="console"
    )
    logger.info(
        "console: %r set the volume to %d %%%s", user, body.volume, " (pinned)" * body.pinned
    )
    return web.json_response({})


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    console = request.app[CONSOLE]
    if not _same_origin(request):
        # Another site open in the nurse's browser must not read the room.
        raise _ApiError(403, "cross-origin WebSocket refused")
    _signed_in(request)
    token = request.cookies.get(COOKIE_NAME, "")
    if len(console.sockets) + console.opening >= console.settings.max_websockets:
        raise _ApiError(503, "too many live connections to this console")
    # No compression: the messages are small and deflate would cost the loop the monitor runs on.
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, timeout=WS_CLOSE_TIMEOUT_S, compress=False)
    console.opening += 1
    try:
        await ws.prepare(request)
    finally:
        console.opening -= 1
    # Subscribe and snapshot in one step (no await between): nothing missed, nothing twice.
    sub = console.subscribe_socket()
    snapshot = console.snapshot()
    console.sockets.add(ws)
    console.watchers_changed()

    def signed_in() -> bool:
        user = console.sessions.user_for(token)
        return user is not None and user in console.users

    pump = asyncio.create_task(
        _pump(
            ws,
            sub=sub,
            snapshot=snapshot,
            control=console.control,
            signed_in=signed_in,
            pleth_rates=console.pleth_rates,
        ),
        name=f"sessiond.console.{sub.name}",
    )
    try:
        async for _ in ws:  # the page sends nothing; reading answers pings and sees the close
            pass
    finally:
        sub.close()
        pump.cancel()
        await asyncio.wait([pump])
        console.sockets.discard(ws)
        console.watchers_changed()
    return ws


def _live_json(event: Event) -> dict[str, Any]:
    """An event for the page, without the free text a nurse typed (it may name the patient).

    Note texts and dose-override reasons stay in the record (read back on demand), not on
    every screen that watches the room.
    """
    if isinstance(event, NurseAction):
        return public_action_json(event)
    return event_json(event)


async def _pump(  # noqa: C901  (one loop: ticks, events and pleth batches)
    ws: web.WebSocketResponse,
    *,
    sub: Subscription,
    snapshot: dict[str, Any],
    control: ConsoleControl,
    signed_in: Callable[[], bool],
    pleth_rates: Mapping[str, float],
) -> None:
    """Send the snapshot, then every event, pleth in batches and a tick each second, until
    either side ends or the sign-in behind the socket ends (expired, signed out)."""
    loop = asyncio.get_running_loop()
    sent = 0
    pleth: dict[str, collections.deque[int]] = {}
    pleth_t: dict[str, float] = {}
    try:
        await ws.send_json(snapshot)
        next_tick = loop.time() + TICK_S
        next_pleth = loop.time() + PLETH_BATCH_S
        while True:
            now = loop.time()
            if now >= next_tick:
                if not signed_in():
                    await ws.close(code=WS_SIGNED_OUT, message=b"signed out")
                    return
                await ws.send_json({"type": "tick", "t": round(control.now(), 3)})
                next_tick = loop.time() + TICK_S
            if now >= next_pleth:
                for device, samples in pleth.items():
                    if samples:
                        await ws.send_json(
                            {"type": "pleth", "device": device, "t": round(pleth_t[device], 3),
                             "rate_hz": pleth_rates.get(device), "samples": list(samples)}
                        )  # fmt: skip
                        samples.clear()
                next_pleth = loop.time() + PLETH_BATCH_S
            try:
                async with asyncio.timeout_at(min(next_tick, next_pleth)):
                    event = await sub.get()
            except TimeoutError:
                continue
            except EOFError:  # the bus closed: the daemon is stopping
                await ws.close(code=WSCloseCode.GOING_AWAY)
                return
            if isinstance(event, Waveform):
                # Sent in the pleth batches only.
                buffer = pleth.setdefault(event.device, collections.deque(maxlen=PLETH_MAX_SAMPLES))
                buffer.extend(event.pleth)
                pleth_t[event.device] = event.t
                continue
            await ws.send_json(_live_json(event))
            sent += 1
            if sent % _YIELD_EVERY == 0:
                # get() and send_json() need not suspend: a full queue must not hog the loop.
                await asyncio.sleep(0)
    except ConnectionError:
        return  # the browser went away; the handler cleans up
    except Exception:
        logger.exception("console: WebSocket %s failed", sub.name)
        await ws.close(code=WSCloseCode.INTERNAL_ERROR)
