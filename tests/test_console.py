"""The console server: sign-in, commands, status and the live WebSocket, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import ClientSession, CookieJar, WSMsgType, web
from yarl import URL

from sessiond.bus import Bus
from sessiond.config import ConsoleConfig, ConsoleUser, NibpConfig
from sessiond.console import server
from sessiond.console.auth import Sessions, hash_password, verify_password
from sessiond.console.server import (
    CONSOLE,
    COOKIE_NAME,
    create_console_app,
    start_console,
)
from sessiond.model import (
    AlarmState,
    AlarmTransition,
    DeviceStatus,
    Phase,
    Priority,
    Quality,
    Reading,
    Route,
)
from sessiond.session.commands import ConsoleControl
from sessiond.wire import event_json
from tests.console_stub import PASSWORD, USERS, StubControl

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

#: Longest a test waits for something that should happen at once.
WAIT_S = 5.0


@dataclass(kw_only=True)
class Served:
    app: web.Application
    runner: web.AppRunner
    port: int
    bus: Bus
    control: StubControl

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    settings: ConsoleConfig | None = None, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Served]:
    """A console on an ephemeral port, with a fresh bus and stub control."""
    bus = Bus()
    control = StubControl(bus=bus)
    typed: ConsoleControl = control  # the stub must satisfy the protocol
    app = create_console_app(
        bus=bus, control=typed, users=USERS, room_id="room-7", settings=settings
    )
    runner, port = await start_console(app, host="127.0.0.1", port=0, ssl_context=ssl_context)
    try:
        yield Served(app=app, runner=runner, port=port, bus=bus, control=control)
    finally:
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve() as s:
        yield s


@pytest.fixture
async def client(served: Served) -> AsyncIterator[ClientSession]:
    # unsafe=True: the cookie jar otherwise ignores cookies from IP-address hosts.
    async with ClientSession(base_url=served.url, cookie_jar=CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(client: ClientSession, password: str = PASSWORD) -> aiohttp.ClientResponse:
    async with client.post("/api/login", json={"user": "nurse1", "password": password}) as resp:
        await resp.read()
        return resp


def cookie_of(served: Served, client: ClientSession) -> str:
    """The sign-in token `client` holds."""
    return client.cookie_jar.filter_cookies(URL(served.url))[COOKIE_NAME].value


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait (at most `WAIT_S`) for a condition inside aiohttp or the bus, which have no events."""
    async with asyncio.timeout(WAIT_S):
        while not predicate():  # noqa: ASYNC110 - nothing to await but the condition itself
            await asyncio.sleep(0.01)


async def next_message(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next WebSocket message of type `kind` (within `WAIT_S`), skipping others (ticks)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            msg: dict[str, Any] = await ws.receive_json()
            if msg["type"] == kind:
                return msg


def reading(t: float = 999.5, **values: Any) -> Reading:
    return Reading(t=t, device="spo2", **({"spo2": 97, "pr": 72, "pi": 3.1} | values))


def spo2_alarm(t: float = 1000.0) -> AlarmTransition:
    return AlarmTransition(
        t=t,
        alarm_id="spo2_low",
        priority=Priority.HIGH,
        state=AlarmState.ACTIVE,
        phase=Phase.ONSET,
        value=84.0,
        limit=85.0,
    )


# ---- auth -------------------------------------------------------------------------------


def test_password_hash_round_trip() -> None:
    """A hash verifies its own password only, and fits the config's stored form."""
    stored = hash_password("s3cret", iterations=1_000)
    assert re.fullmatch(r"pbkdf2_sha256\$1000\$[0-9a-f]{32}\$[0-9a-f]{64}", stored)
    ConsoleUser(password_hash=stored)
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert stored != hash_password("s3cret", iterations=1_000)  # random salt


@pytest.mark.parametrize(
    "stored",
    ["", "pbkdf2_sha256$1000$zz$00", "md5$1000$00$00", "pbkdf2_sha256$0$00$00", "a$b$c"],
)
def test_malformed_hash_matches_nothing(stored: str) -> None:
    """A broken stored hash never lets anyone in and never raises."""
    assert not verify_password("", stored)


def test_session_tokens() -> None:
    """Tokens name their user until they expire, are revoked or are tampered with."""
    now = [1_000_000.0]
    sessions = Sessions(clock=lambda: now[0])
    token = sessions.issue("nurse.one")
    assert sessions.user_for(token) == "nurse.one"
    assert Sessions().user_for(token) is None  # another process's secret
    user, expires, signature = token.split(".")
    assert sessions.user_for(f"{user}.{int(expires) + 3600}.{signature}") is None
    assert sessions.user_for(f"{user}.{expires}.{signature[:-1]}0") in (None, "nurse.one")
    for junk in ("", "a.b", "a.b.c.d", "é.1.x", f"{user}.soon.{signature}"):
        assert sessions.user_for(junk) is None
    now[0] += 12 * 3600 - 1
    assert sessions.user_for(token) == "nurse.one"
    now[0] += 1
    assert sessions.user_for(token) is None

    other = sessions.issue("nurse2")
    sessions.revoke(other)
    assert sessions.user_for(other) is None


# ---- sign-in ------------------------------------------------------------------------------


async def test_login_sets_a_strict_http_only_cookie(client: ClientSession) -> None:
    """A good sign-in answers the user and sets an HttpOnly, SameSite=Strict cookie."""
    resp = await sign_in(client)
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    async with client.get("/api/me") as me:
        assert me.status == 200
        assert await me.json() == {"user": "nurse1"}


@pytest.mark.parametrize(
    ("user", "password"), [("nurse1", "wrong"), ("nurse2", PASSWORD), ("nurse1", "")]
)
async def test_login_refuses_wrong_credentials(
    client: ClientSession, user: str, password: str
) -> None:
    """Wrong password or unknown user: 401 and no cookie."""
    async with client.post("/api/login", json={"user": user, "password": password}) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "wrong user name or password"}
        assert "Set-Cookie" not in resp.headers
    async with client.get("/api/me") as me:
        assert me.status == 200  # signed out is an answer, not an error
        assert await me.json() == {"user": None}


async def test_logout_ends_the_sign_in(served: Served, client: ClientSession) -> None:
    """After logout the cookie is gone and the old token no longer works."""
    await sign_in(client)
    token = client.cookie_jar.filter_cookies(URL(served.url))[COOKIE_NAME].value
    async with client.post("/api/logout", json={}) as resp:
        assert resp.status == 200
    async with client.get("/api/me") as me:
        assert me.status == 200  # signed out is an answer, not an error
        assert await me.json() == {"user": None}
    async with (
        ClientSession(base_url=served.url, cookies={COOKIE_NAME: token}) as replay,
        replay.post("/api/session/start", json={"route": "iv"}) as resp,
    ):
        assert resp.status == 401
    assert served.control.calls == []


async def test_credentials_are_never_logged(
    served: Served, client: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the password nor the session token appears in any log record."""
    caplog.set_level(logging.DEBUG)
    await sign_in(client, password="not-" + PASSWORD)
    async with client.post("/api/login", json={"user": PASSWORD, "password": "x"}) as resp:
        assert resp.status == 401
    await sign_in(client)
    token = client.cookie_jar.filter_cookies(URL(served.url))[COOKIE_NAME].value
    async with client.post("/api/session/start", json={"route": "iv"}) as resp:
        assert resp.status == 200
    assert "signed in" in caplog.text
    assert PASSWORD not in caplog.text
    assert token not in caplog.text


# ---- commands -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/session/start", {"route": "iv"}),
        ("/api/session/dose", {}),
        ("/api/alarms/ack", {"id": "spo2_low"}),
        ("/api/session/end", {}),
        ("/api/alarms/pause", {}),
        ("/api/nibp/measure", {}),
        ("/api/notes", {"text": "calm"}),
        ("/api/session/dose", {"reason": "reviewed"}),
        ("/api/room/scene", {"scene": "effect", "pinned": True}),
        ("/api/room/volume", {"volume": 20}),
    ],
)
async def test_commands_need_sign_in(
    served: Served, client: ClientSession, path: str, body: dict[str, Any]
) -> None:
    """Not signed in: 401 and the command never reaches the session."""
    async with client.post(path, json=body) as resp:
        assert resp.status == 401
        assert await resp.json() == {"error": "not signed in"}
    async with client.get("/api/me") as me:
        assert me.status == 200  # signed out is an answer, not an error
        assert await me.json() == {"user": None}
    assert served.control.calls == []


async def test_start_and_dose(served: Served, client: ClientSession) -> None:
    """Commands go to the session control attributed to the user, and show in the status."""
    await sign_in(client)
    async with client.post("/api/session/start", json={"route": "intranasal"}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"session_id": "sess-1"}
    served.control.t = 1300.0
    async with client.post("/api/session/dose", json={}) as resp:
        assert resp.status == 200
    assert served.control.calls == [
        ("start", {"route": Route.INTRANASAL, "user": "nurse1", "source": "console"}),
        ("dose", {"reason": None, "user": "nurse1", "source": "console"}),
    ]
    served.control.t = 1360.0
    async with client.get("/api/status") as resp:
        status = await resp.json()
    assert status["phase"] == "onset"
    assert status["session"] == {
        "id": "sess-1",
        "route": "intranasal",
        "started_t": 1000.0,
        "dose_t": 1300.0,
        "dose_override": False,
        "ended_t": None,
        "seconds_since_start": 360.0,
        "seconds_since_dose": 60.0,
    }


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/session/start", b"{", "body: not valid JSON"),
        ("/api/session/start", b"", "body: not valid JSON"),
        ("/api/session/start", b"[]", "body: Input should be an object"),
        ("/api/session/start", b"{}", "route: required"),
        ("/api/session/start", b'{"route": "rectal"}', "route: Input should be"),
        ("/api/session/start", b'{"route": 1}', "route: Input should be"),
        ("/api/session/start", b'{"route": "iv", "dose_mg": 50}', "dose_mg: unknown field"),
        ("/api/session/dose", b'{"at": 5}', "at: unknown field"),
        ("/api/alarms/ack", b"{}", "id: required"),
        ("/api/alarms/ack", b'{"id": "DROP TABLE"}', "id: String should match pattern"),
        ("/api/login", b'{"user": "nurse1"}', "password: required"),
        ("/api/session/dose", b'{"reason": 1}', "reason: Input should be a valid string"),
        (
            "/api/session/dose",
            json.dumps({"reason": "r" * 501}).encode(),
            "reason: String should have at most 500 characters",
        ),
        ("/api/session/dose", b'{"reason": "ok", "at": 5}', "at: unknown field"),
        ("/api/alarms/pause", b'{"seconds": 60}', "seconds: unknown field"),
        ("/api/alarms/pause", b"[]", "body: Input should be an object"),
        ("/api/nibp/measure", b'{"now": true}', "now: unknown field"),
        ("/api/notes", b"{}", "text: required"),
        ("/api/notes", b'{"text": ""}', "text: String should have at least 1 character"),
        ("/api/notes", b'{"text": " \\n\\t "}', "text: String should have at least 1 character"),
        (
            "/api/notes",
            json.dumps({"text": "n" * 2001}).encode(),
            "text: String should have at most 2000 characters",
        ),
        ("/api/notes", b'{"text": 5}', "text: Input should be a valid string"),
        ("/api/notes", b'{"text": ["a"]}', "text: Input should be a valid string"),
        ("/api/notes", b'{"text": "calm", "user": "nurse2"}', "user: unknown field"),
        ("/api/room/scene", b"{}", "scene: required"),
        ("/api/room/scene", b'{"scene": 3}', "scene: Input should be a valid string"),
        ("/api/room/scene", b'{"scene": "../../etc"}', "scene: String should match pattern"),
        (
            "/api/room/scene",
            b'{"scene": "effect", "pinned": "yes"}',
            "pinned: Input should be a valid boolean",
        ),
        (
            "/api/room/scene",
            b'{"scene": "effect", "pinned": 1}',
            "pinned: Input should be a valid boolean",
        ),
        ("/api/room/scene", b'{"scene": "effect", "fade_s": 5}', "fade_s: unknown field"),
        ("/api/room/volume", b"{}", "volume: required"),
        (
            "/api/room/volume",
            b'{"volume": 101}',
            "volume: Input should be less than or equal to 100",
        ),
        (
            "/api/room/volume",
            b'{"volume": -1}',
            "volume: Input should be greater than or equal to 0",
        ),
        ("/api/room/volume", b'{"volume": "50"}', "volume: Input should be a valid integer"),
        ("/api/room/volume", b'{"volume": 50.5}', "volume: Input should be a valid integer"),
        ("/api/room/volume", b'{"volume": true}', "volume: Input should be a valid integer"),
        ("/api/room/volume", b'{"volume": null}', "volume: Input should be a valid integer"),
        (
            "/api/room/volume",
            b'{"volume": 50, "pinned": "true"}',
            "pinned: Input should be a valid boolean",
        ),
        ("/api/room/volume", b'{"volume": 50, "duck": true}', "duck: unknown field"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    served: Served, client: ClientSession, path: str, body: bytes, error: str
) -> None:
    """Malformed JSON or an invalid body: 400 with an error that names the field."""
    await sign_in(client)
    headers = {"Content-Type": "application/json"}
    async with client.post(path, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith(error)
    assert served.control.calls == []


async def test_mutating_requests_need_json(served: Served, client: ClientSession) -> None:
    """A form or text post (what another site can send) is refused before anything runs."""
    await sign_in(client)
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type}
        async with client.post(
            "/api/session/start", data=b'{"route": "iv"}', headers=headers
        ) as resp:
            assert resp.status == 415
    assert served.control.calls == []


async def test_cross_origin_requests_are_refused(served: Served, client: ClientSession) -> None:
    """A browser request from another origin is refused; the console's own origin works."""
    await sign_in(client)
    evil = {"Origin": "http://evil.example"}
    async with client.post("/api/session/start", json={"route": "iv"}, headers=evil) as resp:
        assert resp.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=evil)
    assert refused.value.status == 403
    assert served.control.calls == []
    ours = {"Origin": served.url}
    async with client.post("/api/session/start", json={"route": "iv"}, headers=ours) as resp:
        assert resp.status == 200


async def test_rejected_command_is_409_and_changes_nothing(
    served: Served, client: ClientSession
) -> None:
    """CommandRejected: 409 with its reason; nothing is published or recorded."""
    await sign_in(client)
    async with client.post("/api/session/dose", json={}) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "no session is running"}
    async with client.post("/api/session/start", json={"route": "iv"}) as resp:
        assert resp.status == 200
    async with client.get("/api/status") as resp:
        before = await resp.json()
    watch = served.bus.subscribe("test.watch")

    async with client.post("/api/session/start", json={"route": "oral"}) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "a session is already running"}
    served.control.reject = "oximeter not connected"
    async with client.post("/api/session/dose", json={}) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "oximeter not connected"}

    assert len(watch) == 0
    assert served.control.calls == [
        ("start", {"route": Route.IV, "user": "nurse1", "source": "console"})
    ]
    async with client.get("/api/status") as resp:
        assert await resp.json() == before


async def test_acknowledge_reaches_control_and_marks_the_alarm(
    served: Served, client: ClientSession
) -> None:
    """An acknowledgement is attributed, and the status shows that alarm's audio as acked."""
    served.bus.publish(spo2_alarm())
    await sign_in(client)
    async with client.post("/api/alarms/ack", json={"id": "spo2_low"}) as resp:
        assert resp.status == 200
    assert served.control.calls == [
        ("ack", {"alarm_id": "spo2_low", "user": "nurse1", "source": "console"})
    ]
    async with client.get("/api/status") as resp:
        (alarm,) = (await resp.json())["alarms"]
    assert (alarm["id"], alarm["acknowledged"]) == ("spo2_low", True)
    served.control.reject = "spo2_low is not active"
    async with client.post("/api/alarms/ack", json={"id": "spo2_low"}) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "spo2_low is not active"}


# ---- alarm audio, BP, notes, dose override and the room ------------------------------------

#: A route, a body it accepts, and the call the stub should then have recorded.
NEW_COMMANDS: list[tuple[str, dict[str, Any], tuple[str, dict[str, Any]]]] = [
    ("/api/alarms/pause", {}, ("pause", {})),
    ("/api/nibp/measure", {}, ("nibp", {})),
    ("/api/notes", {"text": "Calm, eyes closed."}, ("note", {"text": "Calm, eyes closed."})),
    ("/api/notes", {"text": "  trimmed \n"}, ("note", {"text": "trimmed"})),
    ("/api/notes", {"text": "é" * 2000}, ("note", {"text": "é" * 2000})),
    ("/api/session/dose", {"reason": "Seen by Dr A."}, ("dose", {"reason": "Seen by Dr A."})),
    ("/api/session/dose", {"reason": "   "}, ("dose", {"reason": None})),
    ("/api/session/dose", {"reason": None}, ("dose", {"reason": None})),
    ("/api/room/scene", {"scene": "effect", "pinned": True},
     ("scene", {"scene": "effect", "pinned": True})),
    ("/api/room/scene", {"scene": None}, ("scene", {"scene": None, "pinned": False})),
    ("/api/room/volume", {"volume": 0}, ("volume", {"volume_pct": 0, "pinned": False})),
    ("/api/room/volume", {"volume": 100, "pinned": True},
     ("volume", {"volume_pct": 100, "pinned": True})),
]  # fmt: skip
_IDS = [f"{path}-{i}" for i, (path, _, _) in enumerate(NEW_COMMANDS)]


async def start_session(served: Served, client: ClientSession) -> None:
    """Sign in and start a session, then forget the start so tests see only their own calls."""
    await sign_in(client)
    async with client.post("/api/session/start", json={"route": "iv"}) as resp:
        assert resp.status == 200
    served.control.calls.clear()


@pytest.mark.parametrize(("path", "body", "call"), NEW_COMMANDS, ids=_IDS)
async def test_new_commands_reach_the_control(
    served: Served,
    client: ClientSession,
    path: str,
    body: dict[str, Any],
    call: tuple[str, dict[str, Any]],
) -> None:
    """Each command reaches the control once, with its arguments, as the signed-in user."""
    await start_session(served, client)
    async with client.post(path, json=body) as resp:
        assert resp.status == 200
        assert await resp.json() == {}
    name, args = call
    assert served.control.calls == [(name, {**args, "user": "nurse1", "source": "console"})]


@pytest.mark.parametrize(("path", "body", "call"), NEW_COMMANDS, ids=_IDS)
async def test_new_commands_rejected_are_409_and_change_nothing(
    served: Served,
    client: ClientSession,
    path: str,
    body: dict[str, Any],
    call: tuple[str, dict[str, Any]],
) -> None:
    """CommandRejected: 409 with its reason, no call recorded, nothing published."""
    await start_session(served, client)
    async with client.get("/api/status") as resp:
        before = await resp.json()
    watch = served.bus.subscribe("test.watch")
    served.control.reject = "not now"
    async with client.post(path, json=body) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "not now"}
    assert served.control.calls == []
    assert len(watch) == 0
    async with client.get("/api/status") as resp:
        assert await resp.json() == before


@pytest.mark.parametrize(("path", "body", "call"), NEW_COMMANDS, ids=_IDS)
async def test_new_commands_refuse_cross_origin(
    served: Served,
    client: ClientSession,
    path: str,
    body: dict[str, Any],
    call: tuple[str, dict[str, Any]],
) -> None:
    """A signed-in browser's request from another site is refused before the control."""
    await start_session(served, client)
    async with client.post(path, json=body, headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
        assert await resp.json() == {"error": "cross-origin request refused"}
    assert served.control.calls == []


async def test_pause_shows_in_the_status_until_it_ends(
    served: Served, client: ClientSession
) -> None:
    """A pause is in the status with its end; past the end it no longer shows as paused."""
    await sign_in(client)
    async with client.post("/api/alarms/pause", json={}) as resp:
        assert resp.status == 200
    async with client.get("/api/status") as resp:
        assert (await resp.json())["audio_pause"] == {
            "paused": True, "until_t": 1120.0, "reason": "nurse"
        }  # fmt: skip
    served.control.t = 1120.0
    async with client.get("/api/status") as resp:
        assert (await resp.json())["audio_pause"]["paused"] is False


async def test_dose_over_a_high_gate_needs_a_reason(
    served: Served, client: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """Gate high: no reason is 409; with one the dose is marked, the reason not shown or logged."""
    caplog.set_level(logging.DEBUG)
    await start_session(served, client)
    served.control.gate_closed = True
    async with client.post("/api/session/dose", json={}) as resp:
        assert resp.status == 409
        assert "override" in (await resp.json())["error"]
    assert served.control.calls == []
    reason = "Discussed with Dr Example for Jane Doe"
    async with client.post("/api/session/dose", json={"reason": reason}) as resp:
        assert resp.status == 200
    assert served.control.calls == [
        ("dose", {"reason": reason, "user": "nurse1", "source": "console"})
    ]
    async with client.get("/api/status") as resp:
        status = await resp.json()
    assert status["session"]["dose_override"] is True
    assert status["baseline"] == {"t": 1000.0, "sys": 128.0, "dia": 82.0, "spo2": 97.0, "pr": 72.0}
    assert "Jane" not in json.dumps(status)
    assert "gate overridden" in caplog.text
    assert "Jane" not in caplog.text


async def test_note_text_stays_out_of_status_and_logs(
    served: Served, client: ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A note reaches the record path; the status counts it and the log names only the user."""
    caplog.set_level(logging.DEBUG)
    await start_session(served, client)
    served.control.t = 1042.0
    async with client.post("/api/notes", json={"text": "Jane Doe asked for water"}) as resp:
        assert resp.status == 200
    async with client.get("/api/status") as resp:
        status = await resp.json()
    assert status["notes"] == {"count": 1, "last_t": 1042.0}
    assert "Jane" not in json.dumps(status)
    assert "'nurse1' added a note" in caplog.text
    assert "Jane" not in caplog.text


async def test_measure_now_shows_request_and_reading(served: Served, client: ClientSession) -> None:
    """Measure now: the request (reason `nurse`) and the module's reading are in the status."""
    await start_session(served, client)
    served.control.bp_result = (134, 86, 102, 70)
    served.control.t = 1060.0
    async with client.post("/api/nibp/measure", json={}) as resp:
        assert resp.status == 200
    async with client.get("/api/status") as resp:
        status = await resp.json()
    assert status["nibp"]["last_request"] == {"t": 1060.0, "reason": "nurse"}
    assert status["readings"]["nibp"] | {"flags": []} == {
        "t": 1060.0, "type": "reading", "device": "nibp",
        "sys": 134, "dia": 86, "map": 102, "pr": 70, "flags": [],
    }  # fmt: skip


async def test_room_commands_show_in_the_status(served: Served, client: ClientSession) -> None:
    """A scene and a volume set from the console show as a manual, pinned room setting."""
    await sign_in(client)
    async with client.post("/api/room/scene", json={"scene": "onset", "pinned": True}) as resp:
        assert resp.status == 200
    async with client.post("/api/room/volume", json={"volume": 12, "pinned": True}) as resp:
        assert resp.status == 200
    async with client.get("/api/status") as resp:
        room = (await resp.json())["room_setting"]
    assert room == {
        "t": 1000.0, "scene": "onset", "light_pct": 25.0, "colour_temp_k": 2400,
        "playlist": "onset", "volume_pct": 12, "ducked": False, "override": "manual",
        "pinned": True, "source": "console",
    }  # fmt: skip
    served.control.reject = None
    async with client.post("/api/room/scene", json={"scene": "disco"}) as resp:
        assert resp.status == 409
        assert await resp.json() == {"error": "no scene 'disco'"}


# ---- status and pages ------------------------------------------------------------------------


async def test_status_snapshot(served: Served, client: ClientSession) -> None:
    """`/api/status` is the folded room status on the session clock, for a signed-in nurse."""
    await sign_in(client)
    served.bus.publish(DeviceStatus(t=990.0, device="spo2", connected=True))
    served.bus.publish(reading(flags=Quality.LOW_PERFUSION))
    served.bus.publish(spo2_alarm())
    async with client.get("/api/status") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        status = await resp.json()
    assert status["type"] == "status"
    assert status["room"] == "room-7"
    assert status["t"] == 1000.0
    assert status["session"] is None
    assert status["readings"]["spo2"] == {
        "t": 999.5,
        "type": "reading",
        "device": "spo2",
        "spo2": 97,
        "pr": 72,
        "pi": 3.1,
        "flags": ["low_perfusion"],
    }
    assert [a["id"] for a in status["alarms"]] == ["spo2_low"]
    assert status["devices"] == {"spo2": {"connected": True, "detail": ""}}
    assert status["timeline"]["oral"] == {
        "onset_min": 60.0,
        "effect_end_min": 240.0,
        "discharge_after_min": 240.0,
        "infusion_tail_min": 90.0,
        "discharge_after_stop_min": 90.0,
    }
    assert status["nibp_schedule"] == {
        "interval_min": {"baseline": 5.0, "onset": 10.0, "effect": 15.0, "recovery": 30.0},
        "forced_after_dose_min": [40],
        "infusion_interval_min": 10.0,
    }
    assert status["infusion"] is None


async def test_status_carries_the_configured_bp_programme() -> None:
    """The page's 'next BP' estimate follows the daemon's own `[nibp]` settings."""
    bus = Bus()
    nibp = NibpConfig(onset_interval_min=3, forced_after_dose_min=(20, 60))
    app = create_console_app(
        bus=bus, control=StubControl(bus=bus), users=USERS, room_id="r", nibp=nibp
    )
    runner, port = await start_console(app, host="127.0.0.1", port=0)
    try:
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=f"http://127.0.0.1:{port}", cookie_jar=jar) as client:
            await sign_in(client)
            async with client.get("/api/status") as resp:
                schedule = (await resp.json())["nibp_schedule"]
    finally:
        await runner.cleanup()
    assert schedule["interval_min"]["onset"] == 3.0
    assert schedule["forced_after_dose_min"] == [20, 60]


async def test_page_and_assets(client: ClientSession) -> None:
    """The page and its assets are served locally with a strict content policy."""
    async with client.get("/") as resp:
        assert resp.status == 200
        page = await resp.text()
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    for element in (
        "spo2", "pr", "phase", "since-dose", "alarms", "error", "mark-dose", "pause-audio",
        "audio-state", "bp-request", "bp-next", "measure-nibp", "baseline", "discharge",
        "note-text", "add-note", "room-scene", "scene-select", "volume", "dose-dialog",
    ):  # fmt: skip
        assert f'id="{element}"' in page
    assert "http://" not in page
    assert "https://" not in page
    for asset, kind in (
        ("main.js", "text/javascript"),
        ("overview.js", "text/javascript"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("console.css", "text/css"),
    ):
        async with client.get(f"/static/{asset}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == kind
            assert resp.headers["Cache-Control"] == "no-cache"
            etag = resp.headers["ETag"]
        # Revalidated on every load (assets are no-cache): unchanged, a 304 with no body.
        async with client.get(f"/static/{asset}", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
    async with client.get(URL("/static/%2e%2e/server.py", encoded=True)) as resp:
        assert resp.status in (403, 404)


# ---- WebSocket ------------------------------------------------------------------------------


async def test_websocket_sends_snapshot_then_events(served: Served, client: ClientSession) -> None:
    """A socket gets the status first, then each bus event as JSON, then ticks."""
    await sign_in(client)
    served.bus.publish(reading(t=990.0, spo2=95))
    async with client.ws_connect("/ws") as ws:
        status = await next_message(ws, "status")
        assert status["readings"]["spo2"]["spo2"] == 95
        assert status["t"] == 1000.0

        r = reading(t=1000.2, spo2=None, pr=None, pi=None, flags=Quality.SENSOR_OFF)
        served.bus.publish(r)
        got = await next_message(ws, "reading")
        assert got == event_json(r)
        assert got == {
            "t": 1000.2,
            "type": "reading",
            "device": "spo2",
            "flags": ["sensor_off"],
        }

        served.bus.publish(spo2_alarm())
        assert await next_message(ws, "alarm") == {
            "t": 1000.0,
            "type": "alarm",
            "id": "spo2_low",
            "priority": "high",
            "state": "active",
            "value": 84.0,
            "limit": 85.0,
            "phase": "onset",
        }

        served.control.t = 1234.5
        tick = await next_message(ws, "tick")
        assert tick == {"type": "tick", "t": 1234.5}


async def test_websocket_never_carries_typed_text(served: Served, client: ClientSession) -> None:
    """Notes and override reasons reach the live socket without their text."""
    await start_session(served, client)
    served.control.gate_closed = True
    async with client.ws_connect("/ws") as ws:
        await next_message(ws, "status")
        async with client.post("/api/notes", json={"text": "Jane Doe is anxious"}) as resp:
            assert resp.status == 200
        note = await next_message(ws, "action")
        assert note == {
            "t": 1000.0, "type": "action", "action": "note", "user": "nurse1", "source": "console"
        }  # fmt: skip
        async with client.post("/api/session/dose", json={"reason": "Dr Who for Jane"}) as resp:
            assert resp.status == 200
        dose = await next_message(ws, "action")
        assert dose["action"] == "dose"
        assert dose["override"] is True
        assert "Jane" not in json.dumps(dose)


async def test_websocket_snapshot_is_consistent(served: Served, client: ClientSession) -> None:
    """An event published just before connecting is in the snapshot and not sent again."""
    await sign_in(client)
    served.bus.publish(spo2_alarm())  # the status task has had no chance to run yet
    async with client.ws_connect("/ws") as ws:
        status = await next_message(ws, "status")
        assert [a["id"] for a in status["alarms"]] == ["spo2_low"]
        served.bus.publish(reading(t=1001.0))
        msg = await next_message(ws, "reading")
        assert msg["t"] == 1001.0


async def test_closing_the_socket_closes_its_subscription(
    served: Served, client: ClientSession
) -> None:
    """Each socket has its own bus subscription, gone when the socket goes."""
    await sign_in(client)
    assert len(served.bus._subscriptions) == 1  # the console's status
    async with client.ws_connect("/ws") as one, client.ws_connect("/ws") as two:
        await next_message(one, "status")
        await next_message(two, "status")
        assert len(served.bus._subscriptions) == 3
        assert {s.maxsize for s in served.bus._subscriptions[1:]} == {server.WS_QUEUE_READINGS}
    await wait_until(
        lambda: len(served.bus._subscriptions) == 1 and not served.app[CONSOLE].sockets
    )


async def stuck_websocket(
    port: int, cookie: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that completes the handshake and then never reads again."""
    sock = socket.socket()
    # A tiny receive window, so the server's send buffers fill after a few hundred messages.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)  # noqa: FBT003 - the socket module's own signature
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Cookie: {COOKIE_NAME}={cookie}\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_stuck_client_does_not_hold_up_others(served: Served, client: ClientSession) -> None:
    """A browser that never reads drops its own oldest readings; others get every event."""
    bus = served.bus
    await sign_in(client)
    _, stuck_writer = await stuck_websocket(served.port, cookie_of(served, client))
    try:
        await wait_until(lambda: len(served.app[CONSOLE].sockets) == 1)
        (stuck_ws,) = served.app[CONSOLE].sockets
        stuck_sub = bus._subscriptions[-1]
        async with client.ws_connect("/ws") as fast:
            await next_message(fast, "status")
            # Publish until the stuck socket's sender is blocked on a full connection.
            n = 0
            async with asyncio.timeout(30):
                while not (stuck_ws._req and stuck_ws._req.protocol.writing_paused):
                    for _ in range(100):
                        n += 1
                        bus.publish(reading(t=1000.0 + n * 0.01, spo2=90 + n % 10))
                    await asyncio.sleep(0)  # let the senders run
            # Now a whole queue more than it can hold.
            for _ in range(2 * server.WS_QUEUE_READINGS):
                n += 1
                bus.publish(reading(t=1000.0 + n * 0.01, spo2=90 + n % 10))
            last = reading(t=2000.0, spo2=88)
            bus.publish(last)
            bus.publish(spo2_alarm(t=2000.0))

            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while not seen or seen[-1]["type"] != "alarm":
                    seen.append(await fast.receive_json())
            assert event_json(last) in seen  # the newest reading is never the one dropped

            # Still stuck, and its queue stays bounded by dropping its own oldest readings.
            assert stuck_ws._req is not None
            assert stuck_ws._req.protocol.writing_paused
            assert stuck_sub.dropped > 0
            assert len(stuck_sub) <= server.WS_QUEUE_READINGS + 1
    finally:
        stuck_writer.close()


async def test_shutdown_closes_websockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping the console closes every socket, even one whose browser stopped answering."""
    monkeypatch.setattr(server, "WS_CLOSE_TIMEOUT_S", 0.3)
    async with serve() as served:
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            await sign_in(client)
            _, stuck_writer = await stuck_websocket(served.port, cookie_of(served, client))
            try:
                ws = await client.ws_connect("/ws")
                await next_message(ws, "status")
                await wait_until(lambda: len(served.app[CONSOLE].sockets) == 2)
                async with asyncio.timeout(5):
                    await served.runner.cleanup()
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.CLOSE
                assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
                await ws.close()
                assert served.app[CONSOLE].sockets == set()
                assert served.bus._subscriptions == []
            finally:
                stuck_writer.close()
