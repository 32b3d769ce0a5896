"""The console's security over real HTTP: sign-in to view, Host allow-list, sign-in lockout,
password hashing, TLS with a `Secure` cookie, and the cap on live connections."""

from __future__ import annotations

import asyncio
import getpass
import logging
import shutil
import ssl
import subprocess
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp import ClientSession, CookieJar, WSMsgType

from sessiond import cli
from sessiond.config import ConfigError, ConsoleConfig, parse_config
from sessiond.console.auth import PBKDF2_ITERATIONS, hash_password, verify_password
from sessiond.console.server import CONSOLE, WS_SIGNED_OUT, start_console, tls_context
from tests.console_stub import PASSWORD
from tests.test_console import WAIT_S, next_message, serve, sign_in, spo2_alarm

if TYPE_CHECKING:
    from pathlib import Path


async def test_viewing_needs_sign_in() -> None:
    """Signed out, the status and the live socket are refused; the page is the bare form."""
    async with serve() as served:
        served.bus.publish(spo2_alarm())
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            async with client.get("/api/status") as resp:
                assert resp.status == 401
                assert "spo2" not in await resp.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 401
            async with client.get("/") as page:
                assert page.status == 200
                assert "room-7" not in await page.text()
            await sign_in(client)
            async with client.get("/api/status") as resp:
                assert resp.status == 200
                assert [a["id"] for a in (await resp.json())["alarms"]] == ["spo2_low"]
            async with client.ws_connect("/ws") as ws:
                assert (await next_message(ws, "status"))["room"] == "room-7"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("LOCALHOST", True),
        ("[::1]:{port}", True),
        ("room-7.clinic.lan:{port}", True),  # configured in allowed_hosts
        ("evil.example:{port}", False),  # a DNS-rebinding page's own name
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
async def test_host_header_is_checked(host: str, allowed: bool) -> None:
    """Only the console's own names are answered, for the page, the API and the socket."""
    settings = ConsoleConfig(allowed_hosts=("room-7.clinic.lan",))
    async with serve(settings) as served:
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            await sign_in(client)
            headers = {"Host": host.format(port=served.port)}
            for path in ("/", "/api/status", "/static/main.js"):
                async with client.get(path, headers=headers) as resp:
                    assert (resp.status == 200) is allowed, (path, resp.status)
                    if not allowed:
                        assert resp.status == 421
            login = {"user": "nurse1", "password": PASSWORD}
            async with client.post("/api/login", json=login, headers=headers) as resp:
                assert (resp.status == 200) is allowed


async def test_failed_sign_ins_lock_the_name_with_a_clear_message() -> None:
    """After the configured failures the name is locked (even the right password), with a
    message and Retry-After that say how long; once the lockout ends the right one works."""
    settings = ConsoleConfig(login_max_failures=3, login_lockout_s=300)
    async with serve(settings) as served:
        now = [10_000.0]
        served.app[CONSOLE].throttle.clock = lambda: now[0]
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            statuses = [(await sign_in(client, "wrong")).status for _ in range(2)]
            assert statuses == [401, 401]
            third = await sign_in(client, "wrong")
            assert third.status == 429
            async with client.post(
                "/api/login", json={"user": "nurse1", "password": PASSWORD}
            ) as resp:
                assert resp.status == 429
                assert resp.headers["Retry-After"] == "300"
                assert await resp.json() == {
                    "error": "too many failed sign-ins: sign-in is locked, try again in 5 min"
                }
                assert "Set-Cookie" not in resp.headers
            now[0] += 299
            assert (await sign_in(client)).status == 429
            now[0] += 2
            assert (await sign_in(client)).status == 200


async def test_one_address_cannot_try_many_names() -> None:
    """One client address is locked after four times the per-name limit, across names."""
    settings = ConsoleConfig(login_max_failures=2)
    async with serve(settings) as served, ClientSession(base_url=served.url) as client:
        seen = []
        for i in range(9):
            body = {"user": f"guess{i}", "password": "x"}
            async with client.post("/api/login", json=body) as resp:
                seen.append(resp.status)
        assert seen == [401] * 7 + [429] * 2


async def test_a_burst_of_wrong_passwords_is_stopped() -> None:
    """100 wrong passwords as fast as possible: only the first few are even checked."""
    async with serve() as served, ClientSession(base_url=served.url) as client:
        body = {"user": "nurse1", "password": "wrong"}

        async def once() -> int:
            async with client.post("/api/login", json=body) as resp:
                return resp.status

        statuses = [await once() for _ in range(100)]
        assert statuses.count(401) == 4
        assert statuses.count(429) == 96


def test_new_hashes_use_600k_iterations_and_old_ones_still_verify(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hash-password` writes PBKDF2-SHA256 at 600,000 iterations; 200,000 still verifies."""
    assert PBKDF2_ITERATIONS == 600_000
    old = hash_password("old secret", iterations=200_000)
    assert verify_password("old secret", old)
    monkeypatch.setattr(getpass, "getpass", lambda _prompt: "a long password")
    assert cli.main(["hash-password"]) == 0
    stored = capsys.readouterr().out.strip()
    assert stored.startswith("pbkdf2_sha256$600000$")
    assert verify_password("a long password", stored)


def test_tls_needs_both_files() -> None:
    """A certificate without its key (or the reverse) is a configuration error."""
    with pytest.raises(ConfigError, match=r"console\.tls_key: tls_cert and tls_key go together"):
        parse_config({"console": {"tls_cert": "/etc/sessiond/cert.pem"}}, source="t.toml")


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a certificate")
async def test_tls_serves_https_with_a_secure_cookie(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a certificate the console speaks HTTPS only and the sign-in cookie is `Secure`."""
    cert, key = _self_signed(tmp_path)
    settings = ConsoleConfig(tls_cert=cert, tls_key=key)
    context = tls_context(settings)
    assert context is not None
    async with serve(settings, ssl_context=context) as served:
        client_ctx = ssl.create_default_context(cafile=cert)
        url = f"https://127.0.0.1:{served.port}"
        jar = CookieJar(unsafe=True)
        connector = aiohttp.TCPConnector(ssl=client_ctx)
        async with ClientSession(base_url=url, cookie_jar=jar, connector=connector) as client:
            resp = await sign_in(client)
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
            assert "Secure" in cookie
            assert "HttpOnly" in cookie
            async with client.get("/api/status") as status:
                assert status.status == 200
        async with ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                await plain.get(f"http://127.0.0.1:{served.port}/api/me")
    assert "without TLS" not in caplog.text


async def test_binding_beyond_loopback_without_tls_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Bound to every address without TLS the console warns; on loopback it does not."""
    caplog.set_level(logging.WARNING)
    async with serve() as served:
        assert "without TLS" not in caplog.text
        runner, _ = await start_console(served.app, host="0.0.0.0", port=0)  # noqa: S104
        await runner.cleanup()
    assert "console: bound to 0.0.0.0 without TLS" in caplog.text
    assert "set [console] tls_cert and tls_key" in caplog.text


async def test_live_connections_are_capped() -> None:
    """Beyond `max_websockets` a new socket is refused (503); a closed one frees its place."""
    async with serve(ConsoleConfig(max_websockets=2)) as served:
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            await sign_in(client)
            one = await client.ws_connect("/ws")
            two = await client.ws_connect("/ws")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 503
            await one.close()
            async with asyncio.timeout(WAIT_S):
                while len(served.app[CONSOLE].sockets) > 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            three = await client.ws_connect("/ws")
            await next_message(three, "status")
            await two.close()
            await three.close()


async def test_signing_out_closes_the_live_socket() -> None:
    """A socket lives only as long as its sign-in: logout closes it with `signed out`."""
    async with serve() as served:
        jar = CookieJar(unsafe=True)
        async with ClientSession(base_url=served.url, cookie_jar=jar) as client:
            await sign_in(client)
            async with client.ws_connect("/ws") as ws:
                await next_message(ws, "status")
                async with client.post("/api/logout", json={}) as resp:
                    assert resp.status == 200
                async with asyncio.timeout(WAIT_S):
                    while (msg := await ws.receive()).type is not WSMsgType.CLOSE:
                        pass
                assert msg.data == WS_SIGNED_OUT
