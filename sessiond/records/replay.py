"""`sessiond replay`: a capture through the daemon's own decoders, timeline and alarm engine.

Virtual time is the capture's clock: deadlines fire at the `t` they are due (DESIGN §6).
Output is JSON Lines in time order; the keys are a contract read by outside checks. Nothing
is sent; a `>` line only tells a command/response decoder (NIBP) that a command went out,
which ends a reply cut short before it, as on the live link.

The capture is read in blocks (`CaptureReader.blocks`), each port's bytes of a block go to
its decoder in one `feed_timed` call, and the monitor is driven in line order by the
readings: the result is the same as feeding line by line, as the daemon does, with the
monitor called once per reading and per deadline rather than once per line. Frames that
gave no reading (a Contec or a Nonin binary repeating its numerics) reach the monitor as
`on_frames`, the last before each deadline or reading and each one the monitor asks for
(`repeat_due`). The next deadline is kept as a bound (`Monitor.due_by`), worked out exactly
only when time reaches it. A decoder that reads runs of lines in columns (a Masimo's,
`ReadingColumns`) hands them over so: the monitor takes each quiet stretch of them in one
pass (`Monitor.take_quiet`), and their JSON lines are written from the columns.
"""

from __future__ import annotations

import functools
import json
import math
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from sessiond.devices import make_decoder
from sessiond.devices.decoder import AnswersCommands
from sessiond.model import Quality, Reading, ReadingColumns, ReadingParts, Route
from sessiond.session.monitor import Monitor
from sessiond.wire import event_json, reading_json

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import numpy.typing as npt

    from sessiond.devices.decoder import Decoder
    from sessiond.model import Event
    from sessiond.records.capture import CaptureBlock, CaptureReader
    from sessiond.session.settings import SessionConfig

#: The user and source recorded for the session start and dose that replay performs.
REPLAY_USER = "replay"

_PUBLIC_TYPES = frozenset({"phase", "alarm", "nibp_request", "discharge_ready", "infusion_prompt"})
_INF = math.inf


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
    run = _Run(
        monitor,
        emit,
        decoders,
        dose_at=dose_at,
        infusion_end=infusion_end,
        write=write if readings else None,
    )
    for block in reader.blocks(until=end_at):
        run.block(block)
    end = run.last_t if end_at is None else end_at
    run.upto(end)
    summary = {
        "readings": sum(d.records for d in decoders.values()),
        "frames_bad": sum(d.frames_bad for d in decoders.values()),
        "bytes_skipped": sum(d.bytes_skipped for d in decoders.values()),
    }
    write(dumps({"t": round(end, 3), "type": "summary", **summary}) + "\n")
    return summary


class _Frames:
    """The frames one streaming port's decoder found in a block that the monitor has not been
    told of: their block lines and times, from index `told + 1` on."""

    __slots__ = ("lines", "times", "told")

    def __init__(self, lines: list[int], times: list[float]) -> None:
        self.lines = lines
        self.times = times
        self.told = -1


class _Run:
    """The monitor driven by the readings of a capture, block after block."""

    def __init__(
        self,
        monitor: Monitor,
        emit: Callable[[list[Event]], None],
        decoders: dict[str, Decoder],
        *,
        dose_at: float | None,
        infusion_end: float | None,
        write: Callable[[str], Any] | None,
    ) -> None:
        self.monitor = monitor
        self.emit = emit
        self.decoders = decoders
        self.write = write
        self.last_t = 0.0
        # A command in the capture ends what the module was saying, as on the live link.
        self.commanded = {
            name: d.discard_partial
            for name, d in decoders.items()
            if isinstance(d, AnswersCommands)
        }
        self.dose_at, self.infusion_end = dose_at, infusion_end
        self.frames: dict[str, _Frames] = {}
        #: No deadline comes before this (-INF: unknown, asked of the monitor when reached).
        self.due = -_INF
        self.moves = monitor.moves
        self.line = _ReadingLine()

    def block(self, block: CaptureBlock) -> None:
        """Decode a block's bytes port by port, then drive the monitor in line order."""
        times = block.times
        found: list[tuple[int, int, Reading]] = []
        #: One port's readings in parts with columns, and their lines (the others in `found`).
        columns: tuple[ReadingParts, list[int]] | None = None
        self.frames = {}
        for name, pieces in block.pieces.items():
            decoder = self.decoders[name]
            if name in self.commanded:
                found += self._commanded(block, name)
                continue
            timed = decoder.feed_timed(pieces.data, pieces.ends, times[pieces.lines])
            lines = pieces.lines[timed.pieces].tolist() if timed.pieces else []
            if decoder.streaming and len(timed.frames) > len(set(timed.pieces)):
                frame_lines = pieces.lines[timed.frames]
                self.frames[name] = _Frames(frame_lines.tolist(), times[frame_lines].tolist())
            readings = timed.readings
            if columns is None and isinstance(readings, ReadingParts):
                columns = readings, lines
                continue
            found += [(line, 0, r) for line, r in zip(lines, readings, strict=True)]
        for name in block.sent.keys() - block.pieces.keys():
            if name in self.commanded:
                found += self._commanded(block, name)
        if columns is not None and self.frames:
            # Frames without readings go in line order one by one: so do these.
            readings, lines = columns
            found += [(line, 0, r) for line, r in zip(lines, readings, strict=True)]
            columns = None
        if len(block.pieces) > 1:
            found.sort(key=lambda item: item[:2])
        if columns is not None:
            self._parts(*columns, others=found)
        else:
            for line, _, reading in found:
                self._one(reading, line)
        self._end_block(times)

    def _one(self, reading: Reading, line: int) -> None:
        """A reading of block line `line`: the deadlines before it, its line, its events."""
        self.upto(reading.t, line)
        if self.write is not None:
            self.write(self.line(reading))
        monitor = self.monitor
        self.emit(monitor.on_reading(reading))
        if monitor.moves != self.moves:
            self.moves = monitor.moves
            self.due = -_INF

    def _end_block(self, times: npt.NDArray[np.float64]) -> None:
        if len(times):
            self.last_t = float(times[-1])
            self.upto(self.last_t, len(times))
        self.frames = {}

    def _parts(
        self, readings: ReadingParts, lines: list[int], others: list[tuple[int, int, Reading]]
    ) -> None:
        """A port's readings part by part (`ReadingParts`), and the other ports' readings
        (`others`, in line order) each in its place."""
        at = j = 0
        for part in readings.parts:
            count = len(part)
            if isinstance(part, ReadingColumns):
                j = self._columns(part, lines[at : at + count], others, j)
            else:
                for reading, line in zip(part, lines[at : at + count], strict=True):
                    j = self._others(others, j, before=line)
                    self._one(reading, line)
            at += count
        self._others(others, j, before=None)

    def _others(self, others: list[tuple[int, int, Reading]], j: int, *, before: int | None) -> int:
        """The readings of `others` from `j` on, up to block line `before` (None: all)."""
        while j < len(others) and (before is None or others[j][0] < before):
            line, _, reading = others[j]
            self._one(reading, line)
            j += 1
        return j

    def _columns(
        self,
        readings: ReadingColumns,
        lines: list[int],
        others: list[tuple[int, int, Reading]],
        j: int,
    ) -> int:
        """Readings in columns: one by one, and each stretch the monitor can take in one pass
        (`Monitor.take_quiet`) so, up to the next of `others` (from `j`); returns where
        `others` is then."""
        write, line_of, monitor = self.write, self.line, self.monitor
        i, count = 0, len(readings)
        while i < count:
            j = self._others(others, j, before=lines[i])
            self._one(readings[i], lines[i])
            i += 1
            until = _INF if self.dose_at is None else self.dose_at
            if self.dose_at is None and self.infusion_end is not None:
                until = self.infusion_end
            if j < len(others):
                until = min(until, others[j][2].t)  # its line comes after theirs
            stop, events = monitor.take_quiet(readings, i, until)
            if stop > i:
                if write is not None:
                    write(line_of.run(readings, i, stop))
                self.emit(events)  # the last one's (discharge readiness)
                if monitor.moves != self.moves:
                    self.moves = monitor.moves
                    self.due = -_INF
                i = stop
        return j

    def _commanded(self, block: CaptureBlock, name: str) -> list[tuple[int, int, Reading]]:
        """A command/response port line by line: `>` ends a partial reply (`discard_partial`)."""
        decoder, discard = self.decoders[name], self.commanded[name]
        pieces = block.pieces.get(name)
        steps: list[tuple[int, bytes | None]] = list(block.sent.get(name, []))
        steps = [(line, None) for line, _ in steps]
        if pieces is not None:
            starts = [0, *pieces.ends[:-1].tolist()]
            ends = pieces.ends.tolist()
            lines = pieces.lines.tolist()
            steps += [
                (line, pieces.data[a:b]) for line, a, b in zip(lines, starts, ends, strict=True)
            ]
        steps.sort(key=lambda step: step[0])
        times = block.times
        out: list[tuple[int, int, Reading]] = []
        for line, data in steps:
            if data is None:
                discard()
                continue
            out += [(line, k, r) for k, r in enumerate(decoder.feed(data, float(times[line])))]
        return out

    def upto(self, now: float, line: int | None = None) -> None:
        """Bring the monitor up to `now`, just before block line `line` (None: the end): the
        dose, every deadline, and the frames before them, in time order."""
        dose_at = self.dose_at
        if dose_at is not None and dose_at <= now:
            self._advance(dose_at)
            self._tell_frames(before_t=dose_at, before_line=None)
            self._dose(dose_at)
        end = self.infusion_end
        if self.dose_at is None and end is not None and end <= now:
            self.infusion_end = None
            self._advance(end)
            self._tell_frames(before_t=end, before_line=None)
            self.emit(self.monitor.stop_infusion(end, amount=None, unit=None, user=REPLAY_USER,
                                                 source="replay"))  # fmt: skip
            self._refresh()
        self._advance(now)
        if self.frames:
            self._tell_frames(before_t=_INF, before_line=line)

    def _advance(self, now: float) -> None:
        """Every deadline up to `now`, each after the frames that came before it."""
        monitor = self.monitor
        while self.due <= now:
            # Exact when at or before `now`; else a bound that holds until `Monitor.moves` moves.
            due = self.due = monitor.due_by(now)
            if due > now:
                return
            if self.frames:
                self._tell_frames(before_t=due, before_line=None)
                if self.due != due:
                    continue
            self.emit(monitor.advance(due))
            self._refresh()

    def _tell_frames(self, *, before_t: float, before_line: int | None) -> None:
        """Tell the monitor of the frames (without readings) before `before_t` and line
        `before_line`: each one it asks to evaluate, and then the last."""
        monitor = self.monitor
        for name, frames in self.frames.items():
            stop = len(frames.times) if before_t == _INF else bisect_left(frames.times, before_t)
            if before_line is not None:
                stop = min(stop, bisect_left(frames.lines, before_line))
            last = stop - 1
            while frames.told < last:
                due = monitor.repeat_due(name)
                j = max(frames.told + 1, bisect_left(frames.times, due))
                if j > last:
                    break
                self.emit(monitor.on_frames(name, frames.times[j]))
                frames.told = j
                self._refresh()
            if frames.told < last:
                # Noted, not evaluated (unless the monitor wants it): the deadlines stand.
                self.emit(monitor.on_frames(name, frames.times[last]))
                frames.told = last
                if monitor.moves != self.moves:
                    self._refresh()

    def _refresh(self) -> None:
        self.moves = self.monitor.moves
        self.due = -_INF

    def _dose(self, dose_at: float) -> None:
        self.dose_at = None
        monitor = self.monitor
        # The capture already happened: a closed dose gate is overridden, not refused.
        why = "dose time given to replay"
        if self.infusion_end is None:
            events = monitor.mark_dose(dose_at, user=REPLAY_USER, source="replay", reason=why)
        else:
            events = monitor.start_infusion(
                dose_at, amount=None, unit=None, planned_min=None, user=REPLAY_USER,
                source="replay", reason=why,
            )  # fmt: skip
        self.emit(events)
        self._refresh()


class _ReadingLine:
    """A reading as its JSON line, as `json.dumps(reading_json(r))` writes it, built from
    strings: the same keys in the same order, numbers as `json` formats them (`repr`)."""

    def __init__(self) -> None:
        self._devices: dict[str, str] = {}
        self._flags: dict[Quality, str] = {}

    def _device(self, device: str) -> str:
        known = self._devices.get(device)
        if known is None:
            known = self._devices[device] = json.dumps(device)
        return known

    def _flag(self, flags: Quality) -> str:
        known = self._flags.get(flags)
        if known is None:
            known = self._flags[flags] = json.dumps(flags.names())
        return known

    def run(self, readings: ReadingColumns, start: int, stop: int) -> str:
        """The lines of `readings[start:stop]`, each with an SpO2 and a PR (quiet ones)."""
        ts = readings.t[start:stop]
        spo2s, prs, pis = (
            readings.spo2[start:stop],
            readings.pr[start:stop],
            readings.pi[start:stop],
        )
        head = '{"t": %r, "type": "reading", "device": ' + self._device(readings.device).replace(
            "%", "%%"
        )
        tail = ', "flags": ' + self._flag(readings.flags).replace("%", "%%") + "}\n"
        if all(type(v) is int for v in spo2s) and all(type(v) is int for v in prs):
            if all(p is None for p in pis):
                line = head + ', "spo2": %d, "pr": %d' + tail
                return "".join(
                    [line % (round(t, 3), s, p) for t, s, p in zip(ts, spo2s, prs, strict=True)]
                )
            if all(type(p) is float and -_INF < p < _INF for p in pis):
                line = head + ', "spo2": %d, "pr": %d, "pi": %r' + tail
                return "".join(
                    [
                        line % (round(t, 3), s, p, i)
                        for t, s, p, i in zip(ts, spo2s, prs, pis, strict=True)
                    ]
                )
        return "".join([self(r) for r in readings[start:stop]])

    def __call__(self, r: Reading) -> str:
        device = self._device(r.device)
        flags = self._flag(r.flags)
        spo2, pr, pi = r.spo2, r.pr, r.pi
        if (
            r.sys is None
            and r.dia is None
            and r.map is None
            and (spo2 is None or type(spo2) is int)
            and (pr is None or type(pr) is int)
            and (pi is None or (type(pi) is float and -_INF < pi < _INF))
        ):
            # An oximeter (a Masimo, a Nonin, a Contec), in one piece.
            sat = "" if spo2 is None else f', "spo2": {spo2}'
            rate = "" if pr is None else f', "pr": {pr}'
            index = "" if pi is None else f', "pi": {float.__repr__(pi)}'
            head = f'{{"t": {round(r.t, 3)!r}, "type": "reading", "device": {device}'
            return f'{head}{sat}{rate}{index}, "flags": {flags}}}\n'
        parts = ['{"t": ', repr(round(r.t, 3)), ', "type": "reading", "device": ', device]
        for key, value in (
            ("spo2", r.spo2), ("pr", r.pr), ("pi", r.pi), ("sys", r.sys), ("dia", r.dia),
            ("map", r.map),
        ):  # fmt: skip
            if value is None:
                continue
            kind = type(value)
            if kind is int:
                parts += (', "', key, '": ', int.__repr__(value))
            elif kind is float and math.isfinite(value):
                parts += (', "', key, '": ', float.__repr__(value))
            else:  # anything else (a NaN raises): as json writes it
                return json.dumps(reading_json(r), allow_nan=False) + "\n"
        parts += (', "flags": ', flags, "}\n")
        return "".join(parts)
