"""Past one room and one broker (DESIGN §11): the shipped Mosquitto ACLs keep each room to its
own topics, mutual TLS names a room by its certificate, and two bridged brokers show every
room to one overview. Real Mosquitto processes, the real MQTT bridge, no code change between."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest

from tests import mosquitto
from tests.mosquitto import Mosquitto, listen, password_file
from tests.test_mqtt import bridge_on, make_certificates, online

if TYPE_CHECKING:
    from tests.mosquitto import Listener

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
PASSWORDS = {"room-a": "pw-room-a", "room-b": "pw-room-b", "nurse-station": "pw-station"}

pytestmark = pytest.mark.skipif(not mosquitto.available(), reason="mosquitto is not installed")


def acl_copy(directory: Path) -> Path:
    """The shipped ACL file as it is, where the broker can read it."""
    path = directory / "sessiond.acl"
    shutil.copy(DEPLOY / "sessiond.acl", path)
    return path


def as_user(user: str) -> dict[str, Any]:
    return {"username": user, "password": PASSWORDS[user]}


async def nothing_on(heard: Listener, topic: str, client: aiomqtt.Client, probe: str) -> bool:
    """Whether `topic` stayed silent: a later `probe` from the same client arrived first."""
    await client.publish(probe, b"probe", qos=1)
    await heard.wait_for(probe)
    return heard.on(topic) == []


async def test_each_room_writes_only_its_own_topics(tmp_path: Path) -> None:
    passwd = password_file(tmp_path / "passwd", PASSWORDS)
    config = (f"password_file {passwd}", f"acl_file {acl_copy(tmp_path)}",
              "message_size_limit 65536")  # fmt: skip
    with Mosquitto(tmp_path, allow_anonymous=False, extra_config=config) as broker:
        async with (
            listen(broker.port, "sessiond/#", **as_user("nurse-station")) as overview,
            bridge_on(broker.port, "room-a", **as_user("room-a")) as room_a,
        ):
            # The room's daemon publishes under its own room; the overview reads every room.
            await online(overview, room_a)
            await overview.wait_for(room_a.topic("state"))
            async with aiomqtt.Client(broker.host, broker.port, **as_user("room-a")) as rogue:
                # Its credentials cannot write another room's state, nor command it.
                await rogue.publish("sessiond/room-b/state", b'{"phase": "effect"}', qos=1)
                await rogue.publish("sessiond/room-b/cmd/pause", b'{"user": "x"}', qos=1)
                assert await nothing_on(overview, "sessiond/room-b/#", rogue, room_a.topic("p"))
            # The nurses' station may command a room.
            async with aiomqtt.Client(broker.host, broker.port,
                                      **as_user("nurse-station")) as station:  # fmt: skip
                await station.publish(room_a.topic("cmd/pause"), b'{"user": "ana"}', qos=1)
            assert await room_a.control.next_call() == (
                "pause_audio", {"user": "ana", "source": "mqtt"})  # fmt: skip
            # A room cannot command another room either (room-b's password, room-a's topic).
            async with aiomqtt.Client(broker.host, broker.port, **as_user("room-b")) as other:
                await other.publish(room_a.topic("cmd/pause"), b'{"user": "mallory"}', qos=1)
                await other.publish("sessiond/room-b/x", b"probe", qos=1)
                await overview.wait_for("sessiond/room-b/x")
            assert room_a.control.calls == [("pause_audio", {"user": "ana", "source": "mqtt"})]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_mutual_tls_names_the_room_by_its_certificate(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    room_cert = client_certificate(tmp_path, certs, "room-a")
    station_cert = client_certificate(tmp_path, certs, "nurse-station")
    config = (
        f"cafile {certs['ca']}",
        f"certfile {certs['cert']}",
        f"keyfile {certs['key']}",
        "require_certificate true",
        "use_identity_as_username true",
        f"acl_file {acl_copy(tmp_path)}",
    )
    with Mosquitto(tmp_path, allow_anonymous=False, extra_config=config) as broker:
        station = aiomqtt.TLSParameters(
            ca_certs=str(certs["ca"]), certfile=str(station_cert[0]), keyfile=str(station_cert[1])
        )
        async with (
            listen(broker.port, "sessiond/#", tls_params=station) as overview,
            bridge_on(
                broker.port,
                "room-a",
                tls=True,
                ca_file=str(certs["ca"]),
                cert_file=str(room_cert[0]),
                key_file=str(room_cert[1]),
            ) as room_a,  # fmt: skip
        ):
            await online(overview, room_a)
            assert room_a.bridge.connections == 1
        # Without a client certificate the broker refuses the connection.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            with pytest.raises(aiomqtt.MqttError):
                async with aiomqtt.Client(broker.host, broker.port,
                                          tls_params=aiomqtt.TLSParameters(
                                              ca_certs=str(certs["ca"]))):  # fmt: skip
                    pass


async def test_bridged_brokers_show_every_room_to_one_overview(tmp_path: Path) -> None:
    main_dir, floor_dir = tmp_path / "main", tmp_path / "floor2"
    main_dir.mkdir()
    floor_dir.mkdir()
    with Mosquitto(main_dir) as main:
        bridge = (
            "connection clinic-main",
            f"address {main.host}:{main.port}",
            "remote_clientid bridge-floor2",
            "cleansession true",
            "try_private true",
            "topic sessiond/# both 1",
        )
        with Mosquitto(floor_dir, extra_config=bridge) as floor:
            async with (
                listen(main.port, "sessiond/+/state", "sessiond/+/availability") as overview,
                bridge_on(main.port, "room-1") as near,
                bridge_on(floor.port, "room-7") as far,
            ):
                await online(overview, near)
                await online(overview, far)  # through the bridge
                assert await overview.wait_for(far.topic("state"))
                # A command from the main broker reaches the room on the other one.
                async with aiomqtt.Client(main.host, main.port) as station:
                    await station.publish(far.topic("cmd/pause"), b'{"user": "ana"}', qos=1)
                assert await far.control.next_call() == (
                    "pause_audio", {"user": "ana", "source": "mqtt"})  # fmt: skip
                assert near.control.calls == []


def client_certificate(directory: Path, certs: dict[str, Path], name: str) -> tuple[Path, Path]:
    """A client certificate with CN `name`, signed by the test CA (openssl CLI)."""
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_key = certs["ca"].with_name("ca.key")
    for command in (
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={name}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", certs["ca"], "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "1"],
    ):  # fmt: skip
        subprocess.run([str(c) for c in command], check=True, capture_output=True)
    return cert, key
