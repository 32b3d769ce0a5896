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

    from sessiond.model import Event
    from sessiond.session.settings import SessionConfig

#: The user and source recorded for the session start and dose that replay performs.
REPLAY_USER = "replay"

_PUBLIC_TYPES = frozenset({"phase", "alarm", "nibp_request", "discharge_ready", "infusion_prompt"})


def replay(
    reader: CaptureReader,
    *,
    config: SessionConfig,
    route: Route = Route.IV,
    dose_at: float | None = None,
    infusion_end: float | None = None,
    end_at: float | None = None,
    readings: bool = False,
    write: Callable[[str], Any],
) -> dict[str, int]:
    """Replay `reader`, writing one JSON line per event with `write`; returns the summary.

    With `infusion_end`, the dose at `dose_at` is the start of an infusion stopped then (its
    amounts unknown): the timeline, BP schedule and prompt follow it as in the daemon.
    """
    if infusion_end is not None and (dose_at is None or infusion_end <= dose_at):
        msg = "the infusion's end needs a dose time before it"
        raise ValueError(msg)
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
    dose_if_due = _Doses(monitor, emit, dose_at=dose_at, infusion_end=infusion_end).due
    last_t = 0.0
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


class _Doses:
    """The dose, and an infusion's stop, marked when the capture's clock reaches them."""

    def __init__(
        self,
        monitor: Monitor,
        emit: Callable[[list[Event]], None],
        *,
        dose_at: float | None,
        infusion_end: float | None,
    ) -> None:
        self._monitor, self._emit = monitor, emit
        self._dose_at, self._infusion_end = dose_at, infusion_end

    def due(self, t: float) -> None:
        monitor, emit = self._monitor, self._emit
        dose_at = self._dose_at
        if dose_at is not None and dose_at <= t:
            self._dose_at = None
            emit(monitor.advance(dose_at))
            # The capture already happened: a closed dose gate is overridden, not refused.
            why = "dose time given to replay"
            if self._infusion_end is None:
                emit(monitor.mark_dose(dose_at, user=REPLAY_USER, source="replay", reason=why))
            else:
                emit(
                    monitor.start_infusion(
                        dose_at, amount=None, unit=None, planned_min=None, user=REPLAY_USER,
                        source="replay", reason=why,
                    )
                )  # fmt: skip
        end = self._infusion_end
        if self._dose_at is None and end is not None and end <= t:
            self._infusion_end = None
            emit(monitor.advance(end))
            emit(monitor.stop_infusion(end, amount=None, unit=None, user=REPLAY_USER,
                                       source="replay"))  # fmt: skip
