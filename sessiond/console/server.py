"""The nurse console: HTTP API, live WebSocket and the static page, served by aiohttp.

Viewing the room (status, WebSocket, page) needs no sign-in; commands (the session, alarm
audio, BP, notes, and the room's scene and volume) do, and each one is attributed to the
signed-in user. Every WebSocket has its own small bus subscription, so a
slow or stuck browser drops its own oldest readings and never holds the monitor or other
browsers up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aiohttp import WSCloseCode, hdrs, web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from yarl import URL

from sessiond.config import NibpConfig, TimelineConfig
from sessiond.console.auth import TOKEN_TTL_S, Sessions, verify_password
from sessiond.model import DoseUnit, NurseAction, Phase, Route
from sessiond.session.commands import (
    CommandRejected,
    Control,
    RecordUnavailable,
    describe_invalid,
)
from sessiond.session.infusion import MAX_AMOUNT, MAX_PLANNED_MIN
from sessiond.session.monitor import MAX_NOTE_CHARS
from sessiond.status import RoomStatus
from sessiond.wire import event_json, public_action_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from aiohttp.typedefs import Handler

    from sessiond.bus import Bus, Subscription
    from sessiond.config import ConsoleUser
    from sessiond.model import Event

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
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


class _ApiError(Exception):
    """An API failure answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Console:
    """Per-app state: the folded room status, sign-ins and the open WebSockets."""

    def __init__(
        self,
        *,
        bus: Bus,
        control: Control,
        users: Mapping[str, ConsoleUser],
        room_id: str,
        timeline: TimelineConfig,
        nibp: NibpConfig,
    ) -> None:
        self.bus = bus
        self.control = control
        self.users = users
        self.status = RoomStatus(room_id)
        self.sessions = Sessions()
        self.sockets: set[web.WebSocketResponse] = set()
        self.login_slots = asyncio.Semaphore(LOGIN_CONCURRENCY)
        # Unknown users are checked against a real hash too, so timing does not reveal names.
        self.decoy_hash = next((u.password_hash for u in users.values()), None)
        self._timeline = {route.value: timeline.for_route(route).model_dump() for route in Route}
        self._nibp_schedule = _nibp_schedule(nibp)
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
        return out

    def subscribe_socket(self) -> Subscription:
        return self.bus.subscribe(f"console.ws{next(self._ws_ids)}", maxsize=WS_QUEUE_READINGS)


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


def create_console_app(
    *,
    bus: Bus,
    control: Control,
    users: Mapping[str, ConsoleUser],
    room_id: str,
    timeline: TimelineConfig | None = None,
    nibp: NibpConfig | None = None,
) -> web.Application:
    """The console as an aiohttp application; it follows `bus` while it runs."""
    app = web.Application(middlewares=[_api_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONSOLE] = _Console(
        bus=bus,
        control=control,
        users=users,
        room_id=room_id,
        timeline=timeline or TimelineConfig(),
        nibp=nibp or NibpConfig(),
    )
    app.cleanup_ctx.append(_status_ctx)
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", _index)
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
    app.router.add_post("/api/room/scene", _set_scene)
    app.router.add_post("/api/room/volume", _set_volume)
    app.router.add_get("/ws", _websocket)
    app.router.add_static("/static/", STATIC_DIR)
    return app


async def start_console(app: web.Application, *, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on `host:port` (0: an ephemeral port); returns the runner and the bound port."""
    # on_shutdown closes the WebSockets, so handlers finish well within this.
    runner = web.AppRunner(app, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    logger.info("console: serving on http://%s:%d/", host, bound)
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
    # Live data must never come from a cache; assets are revalidated so upgrades show at once.
    api = request.path.startswith("/api/")
    headers.setdefault(hdrs.CACHE_CONTROL, "no-store" if api else "no-cache")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


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
        return _error(exc.status, exc.message)
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


def _signed_in(request: web.Request) -> str:
    console = request.app[CONSOLE]
    token = request.cookies.get(COOKIE_NAME)
    user = None if token is None else console.sessions.user_for(token)
    if user is None or user not in console.users:
        raise _ApiError(401, "not signed in")
    return user


async def _index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONSOLE].snapshot())


async def _me(request: web.Request) -> web.Response:
    return web.json_response({"user": _signed_in(request)})


async def _login(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    body = await _body(request, _Login)
    user = console.users.get(body.user)
    stored = user.password_hash if user is not None else console.decoy_hash
    ok = False
    if stored is not None:
        async with console.login_slots:
            # PBKDF2 is ~0.1 s of CPU: off the event loop, which also runs the monitor.
            ok = await asyncio.to_thread(verify_password, body.password, stored)
    if user is None or not ok:
        # What was typed as a user name may be a password: only known names are logged.
        logger.warning(
            "console: failed sign-in for %s", repr(body.user) if user else "an unknown user"
        )
        raise _ApiError(401, "wrong user name or password")
    response = web.json_response({"user": body.user})
    response.set_cookie(
        COOKIE_NAME,
        console.sessions.issue(body.user),
        max_age=TOKEN_TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
    )
    logger.info("console: %r signed in", body.user)
    return response


async def _logout(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    token = request.cookies.get(COOKIE_NAME)
    if token is not None:
        console.sessions.revoke(token)
    response = web.json_response({})
    response.del_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict")
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
    user = _signed_in(request)
    body = await _body(request, _InfusionReason)
    await request.app[CONSOLE].control.pause_infusion(
        reason=body.reason, user=user, source="console"
    )
    logger.info("console: %r paused the infusion", user)
    return web.json_response({})


async def _resume_infusion(request: web.Request) -> web.Response:
    user = _signed_in(request)
    body = await _body(request, _InfusionReason)
    await request.app[CONSOLE].control.resume_infusion(
        reason=body.reason, user=user, source="console"
    )
    logger.info("console: %r resumed the infusion", user)
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
    # No compression: the messages are small and deflate would cost the loop the monitor runs on.
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, timeout=WS_CLOSE_TIMEOUT_S, compress=False)
    await ws.prepare(request)
    # Subscribe and snapshot in one step (no await between): nothing missed, nothing twice.
    sub = console.subscribe_socket()
    snapshot = console.snapshot()
    console.sockets.add(ws)
    pump = asyncio.create_task(
        _pump(ws, sub, snapshot, console.control), name=f"sessiond.console.{sub.name}"
    )
    try:
        async for _ in ws:  # the page sends nothing; reading answers pings and sees the close
            pass
    finally:
        sub.close()
        pump.cancel()
        await asyncio.wait([pump])
        console.sockets.discard(ws)
    return ws


def _live_json(event: Event) -> dict[str, Any]:
    """An event for the page, without the free text a nurse typed (it may name the patient).

    Watching needs no sign-in, so note texts and dose-override reasons stay in the record.
    """
    if isinstance(event, NurseAction):
        return public_action_json(event)
    return event_json(event)


async def _pump(
    ws: web.WebSocketResponse,
    sub: Subscription,
    snapshot: dict[str, Any],
    control: Control,
) -> None:
    """Send the snapshot, then every event and a tick each second, until either side ends."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        await ws.send_json(snapshot)
        next_tick = loop.time() + TICK_S
        while True:
            if loop.time() >= next_tick:
                await ws.send_json({"type": "tick", "t": round(control.now(), 3)})
                next_tick = loop.time() + TICK_S
            try:
                async with asyncio.timeout_at(next_tick):
                    event = await sub.get()
            except TimeoutError:
                continue
            except EOFError:  # the bus closed: the daemon is stopping
                await ws.close(code=WSCloseCode.GOING_AWAY)
                return
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
