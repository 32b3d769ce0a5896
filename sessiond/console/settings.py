"""`[console]`: where the nurses' console listens, who may sign in, and its limits."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from sessiond.console.auth import parse_password_hash
from sessiond.errors import KeyProblems
from sessiond.settings import Strict


class ConsoleUser(Strict):
    #: `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`, made by `sessiond hash-password`.
    password_hash: str = Field(pattern=r"^pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]+$")

    @field_validator("password_hash")
    @classmethod
    def _verifiable(cls, v: str) -> str:
        # A hash sign-in would refuse locks the user out; say so now, not at the bedside.
        parse_password_hash(v)
        return v


#: A host name or address as a browser puts it in the Host header (no port).
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$")]


class ConsoleConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Names the console answers to besides the loopback ones and `host` (the Host header is
    #: checked: a DNS-rebinding page under another name reads nothing).
    allowed_hosts: tuple[HostName, ...] = ()
    #: PEM certificate (chain) and key: both set serve HTTPS, and the cookie is `Secure`.
    tls_cert: str = ""
    tls_key: str = ""
    #: Live connections at most (every one is a signed-in page).
    max_websockets: Annotated[int, Field(ge=1, le=256)] = 16
    #: Failed sign-ins for one user name within `login_lockout_s` that lock it for as long
    #: (one client address may fail four times as often, across names).
    login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    login_lockout_s: Annotated[float, Field(ge=10, le=86_400)] = 300
    users: dict[str, ConsoleUser] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            missing = "tls_key" if self.tls_cert else "tls_cert"
            raise KeyProblems([(missing, "tls_cert and tls_key go together: set both or neither")])
        return self
