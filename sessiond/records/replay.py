"""`sessiond replay`: a capture through the daemon's own decoders, timeline and alarm engine.

Virtual time is the capture's clock: deadlines fire at the `t` they are due (DESIGN §6).
Output is JSON Lines in time order; the keys are a contract read by outside checks. Nothing
is sent; a `>` line only tells a command/response decoder (NIBP) that a command went out,
which ends a reply cut short before it, as on the live link.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from sessiond.devices import make_decoder
from sessiond.devices.decoder import AnswersCommands
from sessiond.model import Route
from sessiond.records.capture import FROM_DEVICE, CaptureReader
from sessiond.session.monitor import Monitor
from sessiond.wire import event_json, reading_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.config import Config
    from sessiond.model import Event

#: The user and source recorded for the session start and dose that replay performs.
REPLAY_USER = "replay"

_PUBLIC_TYPES = frozenset({"phase", "alarm", "nibp_request", "discharge_ready"})


def replay(
    reader: CaptureReader,
    *,
    config: Config,
    route: Route = Route.IV,
    dose_at: float | None = None,
    end_at: float | None = None,
    readings: bool = False,
    write: Callable[[str], Any],
) -> dict[str, int]:
    """Replay `reader`, writing one JSON line per event with `write`; returns the summary."""
    decoders = {name: make_decoder(proto, device=name) for name, proto in reader.ports.items()}
    streaming = [name for name, d in decoders.items() if d.streaming]
    nibp = [name for name, d in decoders.items() if not d.streaming]
    # A command in the capture ends what the module was saying, as on the live link.
    commanded = {
        name: d.discard_partial for name, d in decoders.items() if isinstance(d, AnswersCommands)
    }
    monitor = Monitor(config=config, streaming=streaming, nibp=nibp, start=0.0)
    # Strict JSON: a NaN or infinity is a bug to raise, never a line consumers cannot parse.
    dumps = functools.partial(json.dumps, allow_nan=False)

    def emit(events: list[Event]) -> None:
        for event in events:
            out = event_json(event)
            if out["type"] in _PUBLIC_TYPES:
                write(dumps(out) + "\n")

    emit(
        monitor.start_session(
            0.0, session_id="replay", route=route, user=REPLAY_USER, source="replay"
        )
    )
    dose_pending = dose_at is not None
    last_t = 0.0

    def dose_if_due(t: float) -> None:
        nonlocal dose_pending
        if dose_pending and dose_at is not None and dose_at <= t:
            emit(monitor.advance(dose_at))
            # The capture already happened: a closed dose gate is overridden, not refused.
            emit(monitor.mark_dose(dose_at, user=REPLAY_USER, source="replay",
                                   reason="dose time given to replay"))  # fmt: skip
            dose_pending = False

    for record in reader:
        t = record.t
        if end_at is not None and t > end_at:
            break
        last_t = t
        if record.direction != FROM_DEVICE:
            discard = commanded.get(record.port)
            if discard is not None:
                discard()
            continue
        dose_if_due(t)
        emit(monitor.advance(t))
        for reading in decoders[record.port].feed(record.data, t):
            if readings:
                write(dumps(reading_json(reading)) + "\n")
            emit(monitor.on_reading(reading))
    end = last_t if end_at is None else end_at
    dose_if_due(end)
    emit(monitor.advance(end))
    summary = {
        "readings": sum(d.records for d in decoders.values()),
        "frames_bad": sum(d.frames_bad for d in decoders.values()),
        "bytes_skipped": sum(d.bytes_skipped for d in decoders.values()),
    }
    write(dumps({"t": round(end, 3), "type": "summary", **summary}) + "\n")
    return summary
