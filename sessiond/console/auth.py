"""Console sign-in: PBKDF2 password hashes, signed expiring session tokens, and the
failed sign-in throttle.

Tokens are stateless (user, expiry, HMAC-SHA256 under a random per-process secret), so a
restarted daemon simply asks nurses to sign in again. Neither passwords nor tokens are ever
logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

_SCHEME = "pbkdf2_sha256"
_SALT_BYTES = 16
#: Stored hashes asking for more work than this are refused rather than run (a typo of zeros).
_MAX_ITERATIONS = 10_000_000
_MAX_DIGEST_BYTES = 64

#: How long a sign-in lasts: one long session day.
TOKEN_TTL_S = 12 * 3600
#: PBKDF2-HMAC-SHA256 work for new hashes (OWASP Password Storage Cheat Sheet: 600,000).
#: Stored hashes keep their own count, so older ones with fewer iterations still verify.
PBKDF2_ITERATIONS = 600_000


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    """`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>` of `password` with a random salt."""
    if not 1 <= iterations <= _MAX_ITERATIONS:
        msg = f"iterations must be in 1..{_MAX_ITERATIONS}, not {iterations}"
        raise ValueError(msg)
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def parse_password_hash(stored: str) -> tuple[int, bytes, bytes]:
    """(iterations, salt, digest) of a stored hash; `ValueError` saying what is wrong with it."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != _SCHEME:  # noqa: PLR2004 - scheme, iterations, salt, hash
        msg = f"not a {_SCHEME}$<iterations>$<salt hex>$<hash hex> hash"
        raise ValueError(msg)
    _, iterations_text, salt_hex, digest_hex = parts
    # ASCII digits, and few: int() also takes "1_000", other scripts' digits and huge numbers.
    iterations = int(iterations_text) if re.fullmatch(r"[0-9]{1,9}", iterations_text) else 0
    if not 1 <= iterations <= _MAX_ITERATIONS:
        msg = f"iterations must be a whole number in 1..{_MAX_ITERATIONS}"
        raise ValueError(msg)
    try:
        salt = bytes.fromhex(salt_hex)
        digest = bytes.fromhex(digest_hex)
    except ValueError:
        msg = "salt and hash must be hex, two digits a byte"
        raise ValueError(msg) from None
    # A longer digest multiplies the work of every sign-in.
    if not salt or not 1 <= len(digest) <= _MAX_DIGEST_BYTES:
        msg = f"salt must not be empty and the hash must be 1 to {_MAX_DIGEST_BYTES} bytes"
        raise ValueError(msg)
    return iterations, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the `stored` hash; a malformed hash matches nothing."""
    try:
        iterations, salt, expected = parse_password_hash(stored)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(digest, expected)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks signed sign-in tokens `<user b64>.<expiry>.<hmac hex>`."""

    def __init__(
        self, *, ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        # Wall time, not the session clock: a sign-in lasts 12 real hours even at 60x speed.
        self._clock = clock
        self._ttl_s = ttl_s
        self._secret = secrets.token_bytes(32)
        # Signed out before expiry: signature -> expiry, forgotten once expired.
        self._revoked: dict[str, int] = {}

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).hexdigest()

    def issue(self, user: str) -> str:
        """A token naming `user` that expires after the TTL."""
        expires = int(self._clock() + self._ttl_s)
        payload = f"{_b64encode(user.encode())}.{expires}"
        return f"{payload}.{self._sign(payload)}"

    def _check(self, token: str) -> tuple[str, int, str] | None:
        parts = token.split(".")
        if len(parts) != 3:  # noqa: PLR2004 - user, expiry, signature
            return None
        user_b64, expires_text, signature = parts
        if not hmac.compare_digest(self._sign(f"{user_b64}.{expires_text}"), signature):
            return None
        expires = int(expires_text)  # signed by us, so a valid integer
        if expires <= self._clock() or signature in self._revoked:
            return None
        try:
            user = _b64decode(user_b64).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, expires, signature

    def user_for(self, token: str) -> str | None:
        """The user a valid, unexpired, not signed-out token names, else `None`."""
        try:
            checked = self._check(token)
        except (ValueError, UnicodeEncodeError):
            return None
        return None if checked is None else checked[0]

    def revoke(self, token: str) -> None:
        """Sign `token` out before its expiry (logout); unknown tokens are ignored."""
        try:
            checked = self._check(token)
        except (ValueError, UnicodeEncodeError):
            return
        now = self._clock()
        self._revoked = {sig: exp for sig, exp in self._revoked.items() if exp > now}
        if checked is not None:
            self._revoked[checked[2]] = checked[1]


class LoginThrottle:
    """Failed sign-ins per key (a user name, a client address) in a sliding window.

    `max_failures` failures within `lockout_s` lock the key for `lockout_s` from the last of
    them: guessing is slowed to a few tries per lockout, and the nurse is told how long to
    wait. Wall time: a lockout lasts real minutes even at 60x simulation speed.
    """

    #: Keys remembered at most: a flood of made-up names cannot grow memory without bound.
    MAX_KEYS = 10_000

    def __init__(
        self, *, max_failures: int, lockout_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.clock = clock
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if t > now - self.lockout_s]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def locked_for(self, key: str, *, limit: int | None = None) -> float:
        """Seconds `key` stays locked (0: not locked); `limit` overrides `max_failures`."""
        now = self.clock()
        times = self._recent(key, now)
        if len(times) < (limit or self.max_failures):
            return 0.0
        return max(0.0, times[-1] + self.lockout_s - now)

    def failed(self, key: str) -> None:
        now = self.clock()
        if key not in self._failures and len(self._failures) >= self.MAX_KEYS:
            # Forget what has expired; if still full, the oldest key goes.
            for old in list(self._failures):
                self._recent(old, now)
            if len(self._failures) >= self.MAX_KEYS:
                self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(key, []).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
