"""The clinic overview: every room on the broker as a tile (DESIGN §9, §11).

Fed only from MQTT (`<prefix>/+/state`, `+/alarm`, `+/vitals`, `+/availability`), so it works
the same in a room's daemon and in a daemon without a room of its own (a nurses' station),
and a clinic that moves to a clustered broker changes nothing here. Pure folding: the daemon's
MQTT bridge hands each message to `on_message`; the console serves `snapshot()`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

#: The topics the overview follows under the prefix, one level per room.
KINDS = ("state", "alarm", "vitals", "availability")
#: Rooms remembered at most (a misconfigured broker must not grow memory without bound).
MAX_ROOMS = 200
_RANK = {"high": 3, "medium": 2, "low": 1}


@dataclass(slots=True)
class _Room:
    state: dict[str, Any] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    vitals: dict[str, Any] = field(default_factory=dict)
    online: bool | None = None
    #: Real time each part last arrived.
    seen: dict[str, float] = field(default_factory=dict)


class Overview:
    """The rooms as the broker shows them."""

    def __init__(self, prefix: str, *, clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self._clock = clock
        self.rooms: dict[str, _Room] = {}

    def topics(self) -> list[str]:
        return [f"{self.prefix}/+/{kind}" for kind in KINDS]

    def on_message(self, topic: str, payload: bytes) -> None:
        parts = topic.removeprefix(f"{self.prefix}/").split("/")
        if not topic.startswith(f"{self.prefix}/") or len(parts) != 2 or parts[1] not in KINDS:  # noqa: PLR2004 - room and kind
            return
        room_id, kind = parts[-2], parts[-1]
        if not payload:  # a cleared retained state: the room is gone
            if kind == "state":
                self.rooms.pop(room_id, None)
            return
        data: Any = None
        if kind != "availability":
            try:
                data = json.loads(payload)
            except ValueError:
                logger.warning("overview: %s is not JSON", topic)
                return
        room = self.rooms.get(room_id)
        if room is None:
            if len(self.rooms) >= MAX_ROOMS:
                return
            room = self.rooms[room_id] = _Room()
        if kind == "availability":
            room.online = payload.strip() == b"online"
        elif kind == "state" and isinstance(data, dict):
            room.state = data
        elif kind == "alarm" and isinstance(data, list):
            room.alarms = [a for a in data if isinstance(a, dict)]
        elif kind == "vitals" and isinstance(data, dict):
            room.vitals = data
        room.seen[kind] = self._clock()

    def snapshot(self) -> list[dict[str, Any]]:
        """One tile per room (stations without a room left out), ordered by room id."""
        now = self._clock()
        out = []
        for room_id, room in sorted(self.rooms.items()):
            state = room.state
            if state.get("station"):
                continue
            alarms = room.alarms or state.get("alarms", [])
            top = max(alarms, key=lambda a: _RANK.get(str(a.get("priority")), 0), default=None)
            session = state.get("session") or {}
            vitals = room.vitals
            since_state = now - room.seen.get("state", now)
            dose_min = session.get("minutes_since_dose")
            out.append(
                {
                    "room": room_id,
                    "online": room.online is not False,
                    "phase": state.get("phase"),
                    "session": bool(session),
                    # Minutes since dose, moved on by the real time since the state came.
                    "minutes_since_dose": None
                    if dose_min is None
                    else round(dose_min + since_state / 60, 1),
                    "spo2": vitals.get("spo2"),
                    "pr": vitals.get("pr"),
                    "sys": vitals.get("sys"),
                    "dia": vitals.get("dia"),
                    "flags": vitals.get("flags", []),
                    "alarm": None
                    if top is None
                    else {k: top.get(k) for k in ("id", "priority", "state", "device")},
                    "alarms": len(alarms),
                    "console": state.get("console"),
                    "age_s": round(now - max(room.seen.values(), default=now), 1),
                }
            )
        return out
