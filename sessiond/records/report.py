"""The printable session report (DESIGN §10): one self-contained HTML file, charts inline.

Built from the record alone: the session and its times, the fields of a SPRAVATO REMS patient
monitoring form, the timeline (phases, dose, onset and effect windows, gaps), SpO2 / PR / BP
charts (inline SVG drawn here, with the baseline, alarm and dose marks), the baseline, the
alarms and a log of everything that happened with its user, notes and manual entries,
checklists and discharge readiness. No script, no external resource (a Content-Security-
Policy says so); printed, a chart is never cut by a page break. Record text (notes, users,
reasons) is escaped. Times are shown in the local time zone of the machine that prints.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from sessiond import __version__
from sessiond.model import INVALID_FOR_ALARMS, Priority
from sessiond.records.sessions import (
    clock_text,
    duration_text,
    local,
    occurrences,
    offset_text,
    speed_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sessiond.records.sessions import Occurrence, SessionRecord

#: The REMS form asks for BP 40 minutes after the dose; a reading this close to it counts.
REMS_BP_AT_S = 40 * 60.0
REMS_BP_WINDOW_S = 10 * 60.0
#: DESIGN §5: two baseline BP readings before the dose.
_BASELINE_BP_READINGS = 2
#: Grid lines on an axis at most.
_MAX_TICKS = 12
#: A line in a chart is broken where readings are further apart than this (probe off, gap).
MAX_LINE_GAP_S = 10.0

_INVALID = frozenset(flag.name.lower() for flag in INVALID_FOR_ALARMS if flag.name is not None)
_PHASE_FILL = {
    "baseline": "#e8eef6",
    "onset": "#fbe9cf",
    "effect": "#ece1f5",
    "recovery": "#dff0e3",
}
_PRIORITY_COLOUR = {Priority.HIGH: "#c62828", Priority.MEDIUM: "#b26a00", Priority.LOW: "#00838f"}
_UNITS = {"spo2": "%", "pr": "/min", "bp": "mmHg", "dose": "mmHg"}
#: Alarms marked on each chart (by id prefix); the timeline shows them all.
_CHART_ALARMS = {
    "spo2": ("spo2_", "sensor_off", "signal_poor", "device_lost"),
    "pr": ("pr_",),
    "bp": ("bp_", "dose_gate", "nibp_"),
}
_READINESS_CRITERIA = (
    ("time since dose", "Time since the dose at least the route's minimum"),
    ("alarm shown", "No alarm shown"),
    ("spo2", "SpO2 at or above the limit over the whole window"),
    ("bp", "Last SYS/DIA within the margin of the baseline"),
    ("pr", "Last pulse rate within the margin of the baseline"),
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _unit(alarm_id: str) -> str:
    return next((u for prefix, u in _UNITS.items() if alarm_id.startswith(prefix)), "")


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:g}" if value != int(value) else f"{int(value)}"


@dataclass(frozen=True, slots=True)
class _Bp:
    t: float
    wall: datetime
    sys: int
    dia: int
    map: int | None
    pr: int | None

    @property
    def text(self) -> str:
        return f"{self.sys}/{self.dia} mmHg"


class _Data:
    """What the report shows, read out of one session's record."""

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        s = self.session = record.session
        tables = record.tables
        self.actions = record.actions()
        last = [row["t"] for rows in tables.values() for row in rows[-1:]]
        self.t0 = s.started_t
        self.t1 = s.ended_t if s.ended_t is not None else max([s.started_t + 60.0, *last])
        self.t1 = max(self.t1, self.t0 + 60.0)
        self.oximetry: list[tuple[float, int | None, int | None]] = []
        self.bp: list[_Bp] = []
        for row in tables["readings"]:
            if row["sys"] is not None and row["dia"] is not None:
                self.bp.append(
                    _Bp(
                        row["t"],
                        datetime.fromisoformat(row["wall"]),
                        row["sys"],
                        row["dia"],
                        row.get("map"),
                        row.get("pr"),
                    )
                )
            elif _INVALID.intersection((row["flags"] or "").split(",")):
                self.oximetry.append((row["t"], None, None))
            elif row["spo2"] is not None or row["pr"] is not None:
                self.oximetry.append((row["t"], row["spo2"], row["pr"]))
        self.occurrences = occurrences(tables["alarms"])
        baselines = record.events("baseline")
        self.baseline: dict[str, Any] | None = baselines[-1][1] if baselines else None
        self.readiness = record.events("discharge_ready")
        self.gaps = [(float(data["since_t"]), t) for t, data in record.events("gap")]
        self.phases = self._phases()

    def wall(self, t: float) -> datetime:
        return self.session.started_wall + timedelta(seconds=t - self.t0)

    def when(self, t: float) -> str:
        """Local clock time, and minutes since the dose when there is one."""
        text = local(self.wall(t)).strftime("%H:%M:%S")
        dose_t = self.session.dose_t
        return text if dose_t is None else f"{text} ({offset_text(t - dose_t)})"

    def _phases(self) -> list[tuple[str, float, float]]:
        """(phase, from, to), consecutive repeats (a resumed session) merged."""
        marks: list[tuple[float, str]] = []
        for row in self.record.tables["phases"]:
            if not marks or marks[-1][1] != row["phase"]:
                marks.append((row["t"], row["phase"]))
        out = []
        for i, (t, phase) in enumerate(marks):
            if phase == "ended":
                continue
            end = marks[i + 1][0] if i + 1 < len(marks) else self.t1
            out.append((phase, t, end))
        return out

    def bp_before_dose(self) -> _Bp | None:
        dose_t = self.session.dose_t
        if dose_t is None:
            return None
        before = [bp for bp in self.bp if bp.t <= dose_t]
        return before[-1] if before else None

    def bp_at_40(self) -> _Bp | None:
        dose_t = self.session.dose_t
        if dose_t is None:
            return None
        target = dose_t + REMS_BP_AT_S
        near = [bp for bp in self.bp if abs(bp.t - target) <= REMS_BP_WINDOW_S]
        return min(near, key=lambda bp: abs(bp.t - target)) if near else None

    def ready_from(self) -> float | None:
        """When readiness was last reached, if it still held at the end."""
        if not self.readiness or not self.readiness[-1][1]["ready"]:
            return None
        return self.readiness[-1][0]

    def dose_gate(self) -> tuple[str, str | None]:
        """The BP gate at the dose: its level (clear, low, high) and the override reason."""
        dose_t = self.session.dose_t
        level = "clear"
        for row in self.record.tables["alarms"]:
            if row["alarm_id"] != "dose_gate":
                continue
            if dose_t is not None and (
                row["t"] > dose_t or (row["t"] == dose_t and row["state"] == "cleared")
            ):
                continue  # the dose itself ends the gate's alarm
            level = "clear" if row["state"] == "cleared" else row["priority"]
        reason = next(
            (a["detail"].get("override_reason") for a in self.actions if a["action"] == "dose"),
            None,
        )
        return level, reason


def report_html(record: SessionRecord, *, generated: datetime) -> str:
    """The whole report as one HTML document."""
    d = _Data(record)
    s = d.session
    sections = [
        _header(d),
        _rems(d),
        _timeline(d),
        _chart_spo2(d),
        _chart_pr(d),
        _chart_bp(d),
        _baseline(d),
        _alarms(d),
        _log(d),
        _infusion(d),
        _notes(d),
        _checklists(d),
        _nurse_checklists(d),
        _readiness(d),
        (
            f"<footer>Session {_e(s.id)} · sessiond {_e(__version__)} · printed "
            f"{_e(clock_text(generated))} · times in {_e(_zone(s.started_wall))} · the record "
            "holds no patient name; identify the patient on the printed copy.</footer>"
        ),
    ]
    template = Template(resources.files("sessiond.records").joinpath("report.html").read_text())
    return template.substitute(
        title=_e(f"Session {s.id} — {clock_text(s.started_wall)}"),
        version=_e(__version__),
        body="\n".join(sections),
    )


def _zone(stamp: datetime) -> str:
    """The local zone as it stood at `stamp`: `CET (UTC+01:00)`."""
    at = local(stamp)
    offset = at.strftime("%z")
    return f"{at.tzname()} (UTC{offset[:3]}:{offset[3:]})"


# Sections ----------------------------------------------------------------------------------


def _facts(rows: Iterable[tuple[str, ...]]) -> str:
    """A two-column table of (label, HTML value[, row id])."""
    body = "".join(
        (f'<tr id="{row_id[0]}">' if row_id else "<tr>")
        + f"<th>{_e(label)}</th><td>{value}</td></tr>"
        for label, value, *row_id in rows
    )
    return f'<table class="facts">{body}</table>'


def _header(d: _Data) -> str:
    s = d.session
    summary = d.record.summary()
    end = "still open" if s.ended_wall is None else _e(clock_text(s.ended_wall))
    if summary.closed_by_sessiond:
        end += f" <span class='muted'>(closed by sessiond: {_e(summary.closed_by_sessiond)})</span>"
    dose = "not marked" if s.dose_wall is None else _e(clock_text(s.dose_wall))
    duration = "—" if s.duration_s is None else _e(duration_text(s.duration_s, with_seconds=True))
    alarms = ", ".join(f"{n} {p.label}" for p, n in sorted(summary.alarms.items(), reverse=True))
    gaps = (
        "none"
        if not d.gaps
        else _e(
            f"{len(d.gaps)} ({duration_text(sum(b - a for a, b in d.gaps), with_seconds=True)})"
        )
    )
    rows = [
        ("Session", f"<code>{_e(s.id)}</code>"),
        ("Room", _e(s.room)),
        ("Route", _e(s.route)),
        ("Started", f"{_e(clock_text(s.started_wall))} by {_e(s.started_by)}"),
        ("Dose", dose),
        ("Ended", end),
        ("Duration", duration),
        ("Alarm occurrences", _e(alarms)),
        ("Monitoring gaps", gaps),
    ]
    if s.speed != 1:
        rows.append(
            (
                "Time scale",
                f"<strong>{_e(speed_text(s.speed))}</strong>: simulated, not a patient's record",
            )
        )
    return f"<h1>Session report</h1>\n{_facts(rows)}"


def _rems(d: _Data) -> str:
    s = d.session
    before, at40 = d.bp_before_dose(), d.bp_at_40()
    last_bp = d.bp[-1] if d.bp else None
    dose_t = s.dose_t

    def bp(value: _Bp | None, missing: str) -> str:
        return _e(missing) if value is None else _e(f"{value.text} at {d.when(value.t)}")

    if dose_t is None:
        observed = "no dose marked"
    else:
        observed = f"{duration_text(d.t1 - dose_t)} (h:mm) after the dose, " + (
            "until now (session open)" if s.ended_t is None else "until the end of monitoring"
        )
    ready_t = d.ready_from()
    if dose_t is None:
        ready = "—"
    elif ready_t is not None:
        ready = (
            f"<span class='ok'>Yes</span>: discharge criteria met from {_e(d.when(ready_t))}"
            " and still at the end"
        )
    else:
        unmet = d.readiness[-1][1].get("unmet", []) if d.readiness else []
        why = f" (not met: {', '.join(unmet)})" if unmet else " (criteria never met)"
        ready = f"<span class='no'>No</span> at the end{_e(why)}"
    gate, reason = d.dose_gate()
    vitals = "—"
    if d.baseline is not None:
        b = d.baseline
        vitals = (
            f"baseline {_num(b.get('sys'))}/{_num(b.get('dia'))} mmHg, "
            f"SpO2 {_num(b.get('spo2'))} %, PR {_num(b.get('pr'))} /min; BP gate {gate}"
        )
        vitals = _e(vitals)
        if reason:
            vitals += f"; dose given with override: <q>{_e(reason)}</q>"
    lowest = min((spo2 for _, spo2, _ in d.oximetry if spo2 is not None), default=None)
    resp = "" if lowest is None else f"lowest SpO2 {lowest} %"
    n_spo2 = sum(1 for o in d.occurrences if o.alarm_id == "spo2_low")
    if n_spo2:
        resp += f", {n_spo2} spo2_low alarm{'s' * (n_spo2 > 1)}"
    boxes = "<span class='box'></span>yes<span class='box'></span>no"
    rows = [
        ("Date of the session", _e(local(s.started_wall).strftime("%Y-%m-%d")), "rems-date"),
        ("Time of administration (dose)", "—" if dose_t is None else _e(d.when(dose_t)),
         "rems-dose"),
        ("Blood pressure before administration", bp(before, "no reading before the dose"),
         "rems-bp-before"),
        ("Blood pressure 40 min after administration",
         bp(at40, "no reading near dose + 40 min"), "rems-bp-40"),
        ("Blood pressure before the end of monitoring", bp(last_bp, "no reading"), "rems-bp-end"),
        ("Vital signs before administration", vitals, "rems-vitals"),
        ("Observation time", _e(observed), "rems-observation"),
        ("Patient ready to leave", ready, "rems-ready"),
        ("Sedation", boxes, "rems-sedation"),
        ("Dissociation", boxes, "rems-dissociation"),
        ("Respiratory depression", f"{boxes} <span class='muted'>{_e(resp)}</span>", "rems-resp"),
    ]  # fmt: skip
    return (
        "<section class='rems keep'><h2>SPRAVATO® REMS patient monitoring form: values from "
        "the record</h2>"
        f"{_facts(rows)}"
        "<p class='muted'>Transcribe into the REMS form; sedation, dissociation and respiratory "
        "depression are the healthcare provider's assessment. sessiond submits nothing.</p>"
        "</section>"
    )


# Charts ------------------------------------------------------------------------------------

_W, _LEFT, _RIGHT, _TOP, _BOTTOM = 1000.0, 46.0, 22.0, 16.0, 22.0


@dataclass(frozen=True, slots=True)
class _Axes:
    t0: float
    t1: float
    lo: float
    hi: float
    height: float

    def x(self, t: float) -> float:
        return round(_LEFT + (t - self.t0) / (self.t1 - self.t0) * (_W - _LEFT - _RIGHT), 1)

    def y(self, v: float) -> float:
        span = self.height - _TOP - _BOTTOM
        return round(_TOP + (self.hi - v) / (self.hi - self.lo) * span, 1)

    @property
    def bottom(self) -> float:
        return self.height - _BOTTOM


def _figure(n: int, title: str, svg: str, key: str) -> str:
    return (
        f'<figure class="chart" id="figure-{n}"><figcaption>Figure {n}. {_e(title)}</figcaption>'
        f'{svg}<p class="key">Figure {n} key: {key}</p></figure>'
    )


def _svg(ax: _Axes, body: Iterable[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {_W:g} {ax.height:g}" role="img" aria-label="{_e(label)}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="11">{"".join(body)}</svg>'
    )


def _frame(d: _Data, ax: _Axes, *, ticks: Iterable[float]) -> list[str]:
    """Phase shading, gaps, the time and value grid, and the dose mark."""
    out = [
        f'<rect x="{ax.x(a)}" y="{_TOP}" width="{max(ax.x(b) - ax.x(a), 0.5)}" '
        f'height="{ax.bottom - _TOP}" fill="{_PHASE_FILL.get(phase, "#f2f2f2")}"/>'
        for phase, a, b in d.phases
    ]
    out += [
        f'<rect x="{ax.x(a)}" y="{_TOP}" width="{max(ax.x(b) - ax.x(a), 1.0)}" '
        f'height="{ax.bottom - _TOP}" fill="url(#gap)"><title>no monitoring</title></rect>'
        for a, b in d.gaps
    ]
    for v in ticks:
        y = ax.y(v)
        out.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y}" y2="{y}" stroke="#d5d8dc" '
            f'stroke-width="0.6"/><text x="{_LEFT - 4}" y="{y + 4}" text-anchor="end" '
            f'fill="#444">{_num(v)}</text>'
        )
    out += _time_axis(d, ax)
    if d.session.dose_t is not None:
        x = ax.x(d.session.dose_t)
        out.append(
            f'<line x1="{x}" x2="{x}" y1="{_TOP - 4}" y2="{ax.bottom}" stroke="#111" '
            f'stroke-width="1.6"/><text x="{x + 3}" y="{_TOP - 5}" fill="#111">dose</text>'
        )
    out.append(
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" '
        f'height="{ax.bottom - _TOP}" fill="none" stroke="#888" stroke-width="0.8"/>'
    )
    return out


_GAP_PATTERN = (
    '<defs><pattern id="gap" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#9e9e9e" stroke-width="2"/></pattern></defs>'
)


def _time_axis(d: _Data, ax: _Axes) -> list[str]:
    span_min = (ax.t1 - ax.t0) / 60.0
    step = next((m for m in (5, 10, 15, 30, 60, 120, 240) if span_min / m <= _MAX_TICKS), 480)
    start = local(d.wall(ax.t0))
    tick = start.replace(minute=0, second=0, microsecond=0)
    while tick < start:
        tick += timedelta(minutes=step)
    out = []
    while (t := ax.t0 + (tick - start).total_seconds()) <= ax.t1:
        x = ax.x(t)
        out.append(
            f'<line x1="{x}" x2="{x}" y1="{_TOP}" y2="{ax.bottom}" stroke="#d5d8dc" '
            f'stroke-width="0.6"/><text x="{x}" y="{ax.bottom + 15}" text-anchor="middle" '
            f'fill="#444">{tick.strftime("%H:%M")}</text>'
        )
        tick += timedelta(minutes=step)
    return out


def _line(
    ax: _Axes, points: Iterable[tuple[float, float | None]], *, colour: str, width: float = 1.4
) -> str:
    """A polyline broken where values are missing or far apart, min/max per pixel column."""
    segments: list[list[tuple[float, float]]] = [[]]
    last: float | None = None
    for t, v in points:
        if v is None or (last is not None and t - last > MAX_LINE_GAP_S):
            if segments[-1]:
                segments.append([])
            last = None
            if v is None:
                continue
        segments[-1].append((t, v))
        last = t
    column_s = (ax.t1 - ax.t0) / 1000.0
    parts = []
    for segment in segments:
        if not segment:
            continue
        columns: dict[int, list[tuple[float, float]]] = {}
        for t, v in segment:
            columns.setdefault(int((t - ax.t0) // column_s), []).append((t, v))
        kept: list[tuple[float, float]] = []
        for values in columns.values():
            low, high = min(values, key=lambda p: p[1]), max(values, key=lambda p: p[1])
            kept += sorted({low, high})
        coords = " ".join(f"{ax.x(t)},{ax.y(v)}" for t, v in kept)
        parts.append(f"M{coords}" if len(kept) > 1 else f"M{coords} l0.1,0")
    return (
        f'<path d="{" ".join(parts)}" fill="none" stroke="{colour}" '
        f'stroke-width="{width}" stroke-linejoin="round" stroke-linecap="round"/>'
    )


def _baseline_line(ax: _Axes, value: float | None, label: str) -> str:
    if value is None:
        return ""
    y = ax.y(value)
    return (
        f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y}" y2="{y}" stroke="#333" '
        f'stroke-dasharray="6 4" stroke-width="1"/><text x="{_W - _RIGHT - 4}" y="{y - 3}" '
        f'text-anchor="end" fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">'
        f"{_e(label)}</text>"
    )


def _alarm_marks(d: _Data, ax: _Axes, prefixes: tuple[str, ...] | None) -> list[str]:
    out = []
    for o in d.occurrences:
        if prefixes is not None and not o.alarm_id.startswith(prefixes):
            continue
        x, colour = ax.x(o.start_t), _PRIORITY_COLOUR[o.priority]
        end = ax.x(d.t1 if o.end_t is None else o.end_t)
        out.append(
            f"<g><title>{_e(o.alarm_id)} {o.priority.label} at {_e(d.when(o.start_t))}</title>"
            f'<rect x="{x}" y="{_TOP}" width="{max(end - x, 1.5)}" height="4" fill="{colour}"/>'
            f'<path d="M{x - 5},{_TOP - 9} L{x + 5},{_TOP - 9} L{x},{_TOP} Z" fill="{colour}"/>'
            "</g>"
        )
    return out


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]


_KEY_COMMON = "shading, dose line and alarm marks as in figure 1"


def _chart_spo2(d: _Data) -> str:
    values = [v for _, v, _ in d.oximetry if v is not None]
    lo = min(80.0, math.floor((min(values, default=90) - 2) / 5) * 5)
    ax = _Axes(d.t0, d.t1, lo, 100.0, 200.0)
    base = None if d.baseline is None else d.baseline.get("spo2")
    body = [_GAP_PATTERN, *_frame(d, ax, ticks=_ticks(lo, 100, 5))]
    body.append(_line(ax, ((t, v) for t, v, _ in d.oximetry), colour="#1565c0"))
    body.append(_baseline_line(ax, base, f"baseline {_num(base)} %"))
    body += _alarm_marks(d, ax, _CHART_ALARMS["spo2"])
    key = f"blue line: SpO2 (%); dashed: baseline; {_KEY_COMMON}."
    return _figure(2, "SpO2 (%)", _svg(ax, body, "SpO2 chart"), _e(key))


def _chart_pr(d: _Data) -> str:
    values = [v for _, _, v in d.oximetry if v is not None]
    values += [bp.pr for bp in d.bp if bp.pr is not None]
    lo = min(50.0, math.floor((min(values, default=60) - 5) / 10) * 10)
    hi = max(110.0, math.ceil((max(values, default=100) + 5) / 10) * 10)
    ax = _Axes(d.t0, d.t1, lo, hi, 200.0)
    base = None if d.baseline is None else d.baseline.get("pr")
    step = 10 if (hi - lo) / 10 <= _MAX_TICKS else 20
    body = [_GAP_PATTERN, *_frame(d, ax, ticks=_ticks(lo, hi, step))]
    body.append(_line(ax, ((t, v) for t, _, v in d.oximetry), colour="#2e7d32"))
    body.append(_baseline_line(ax, base, f"baseline {_num(base)} /min"))
    body += _alarm_marks(d, ax, _CHART_ALARMS["pr"])
    key = f"green line: pulse rate from the oximeter (/min); dashed: baseline; {_KEY_COMMON}."
    return _figure(3, "Pulse rate (/min)", _svg(ax, body, "Pulse rate chart"), _e(key))


def _chart_bp(d: _Data) -> str:
    sys_ = [bp.sys for bp in d.bp]
    dia = [bp.dia for bp in d.bp]
    lo = min(50.0, math.floor((min(dia, default=60) - 10) / 20) * 20)
    hi = max(180.0, math.ceil((max(sys_, default=160) + 10) / 20) * 20)
    ax = _Axes(d.t0, d.t1, lo, hi, 220.0)
    body = [_GAP_PATTERN, *_frame(d, ax, ticks=_ticks(lo, hi, 20))]
    for bp in d.bp:
        x = ax.x(bp.t)
        body.append(
            f"<g><title>{bp.sys}/{bp.dia} mmHg at {_e(d.when(bp.t))}</title>"
            f'<line x1="{x}" x2="{x}" y1="{ax.y(bp.sys)}" y2="{ax.y(bp.dia)}" stroke="#6a1b9a" '
            f'stroke-width="1.5"/>'
            f'<path d="M{x - 5},{ax.y(bp.sys) - 5} L{x},{ax.y(bp.sys)} L{x + 5},'
            f'{ax.y(bp.sys) - 5}" fill="none" stroke="#6a1b9a" stroke-width="1.5"/>'
            f'<path d="M{x - 5},{ax.y(bp.dia) + 5} L{x},{ax.y(bp.dia)} L{x + 5},'
            f'{ax.y(bp.dia) + 5}" fill="none" stroke="#6a1b9a" stroke-width="1.5"/>'
            + (
                ""
                if bp.map is None
                else f'<circle cx="{x}" cy="{ax.y(bp.map)}" r="2.2" fill="#6a1b9a"/>'
            )
            + "</g>"
        )
    if d.baseline is not None:
        b = d.baseline
        body.append(_baseline_line(ax, b.get("sys"), f"baseline SYS {_num(b.get('sys'))}"))
        body.append(_baseline_line(ax, b.get("dia"), f"baseline DIA {_num(b.get('dia'))}"))
    body += _alarm_marks(d, ax, _CHART_ALARMS["bp"])
    key = (
        f"purple: each BP reading, SYS (v) to DIA (^) in mmHg, dot: mean; dashed: baseline "
        f"SYS and DIA; {_KEY_COMMON}."
    )
    return _figure(4, "Blood pressure (mmHg)", _svg(ax, body, "Blood pressure chart"), _e(key))


def _timeline(d: _Data) -> str:
    ax = _Axes(d.t0, d.t1, 0.0, 1.0, 92.0)
    body = [_GAP_PATTERN, *_frame(d, ax, ticks=())]
    for phase, a, b in d.phases:
        x = (ax.x(a) + ax.x(b)) / 2
        body.append(
            f'<text x="{x}" y="{(_TOP + ax.bottom) / 2 + 4}" text-anchor="middle" '
            f'fill="#222">{_e(phase)}</text>'
        )
    body += _alarm_marks(d, ax, None)
    figure = _figure(
        1,
        "Timeline",
        _svg(ax, body, "Session timeline"),
        _e(
            "shading: the phases (blue baseline, orange onset window, violet effect window, green "
            "recovery); hatched: no monitoring; black line: the dose; triangles and bars: alarm "
            "occurrences from raised to cleared (red high, amber medium, teal low)."
        ),
    )
    rows = "".join(
        f"<tr><td>{_e(phase)}</td><td>{_e(d.when(a))}</td><td>{_e(d.when(b))}</td>"
        f"<td class='num'>{_e(duration_text(b - a, with_seconds=True))}</td></tr>"
        for phase, a, b in d.phases
    )
    rows += "".join(
        f"<tr><td>no monitoring (gap)</td><td>{_e(d.when(a))}</td><td>{_e(d.when(b))}</td>"
        f"<td class='num'>{_e(duration_text(b - a, with_seconds=True))}</td></tr>"
        for a, b in d.gaps
    )
    table = (
        "<table><thead><tr><th>phase</th><th>from</th><th>to</th><th class='num'>"
        f"duration</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return f"<h2>Timeline</h2>{figure}{table}"


# Tables ------------------------------------------------------------------------------------


def _baseline(d: _Data) -> str:
    if d.baseline is None:
        return "<h2>Baseline</h2><p>No baseline: the dose was not marked.</p>"
    b = d.baseline
    pre = [bp for bp in d.bp if d.session.dose_t is not None and bp.t <= d.session.dose_t]
    readings = ", ".join(f"{bp.sys}/{bp.dia} at {local(bp.wall).strftime('%H:%M')}" for bp in pre)
    rows = [
        (
            "Blood pressure",
            _e(
                f"{_num(b.get('sys'))}/{_num(b.get('dia'))} mmHg "
                "(mean of the last two readings before the dose)"
            ),
        ),
        ("Pre-dose BP readings", _e(readings or "none")),
        ("SpO2", _e(f"{_num(b.get('spo2'))} % (median of the 5 minutes before the dose)")),
        ("Pulse rate", _e(f"{_num(b.get('pr'))} /min (median of the 5 minutes before the dose)")),
    ]
    return f"<h2>Baseline</h2>{_facts(rows)}"


def _occurrence_row(d: _Data, o: Occurrence) -> str:
    unit = _unit(o.alarm_id)
    value = "" if o.value is None else f"{_num(o.value)} {unit} (limit {_num(o.limit)})"
    device = f" ({o.device})" if o.device else ""
    end = "shown at the end" if o.end_t is None else d.when(o.end_t)
    acks = [
        a
        for a in d.actions
        if a["action"] == "ack"
        and a["detail"].get("alarm_id") == o.alarm_id
        and o.start_t <= a["t"] <= (d.t1 if o.end_t is None else o.end_t)
    ]
    ack = ", ".join(f"{a['user']} at {local(d.wall(a['t'])).strftime('%H:%M:%S')}" for a in acks)
    return (
        f"<tr><td>{_e(d.when(o.start_t))}</td><td class='p-{o.priority.label}'>"
        f"{_e(o.priority.label)}</td><td>{_e(o.alarm_id + device)}</td><td>{_e(value)}</td>"
        f"<td>{_e(end)}</td><td>{_e(ack or '—')}</td></tr>"
    )


def _alarms(d: _Data) -> str:
    if not d.occurrences:
        return "<h2>Alarms</h2><p>No alarm was raised.</p>"
    rows = "".join(_occurrence_row(d, o) for o in d.occurrences)
    return (
        "<h2>Alarms</h2><table><thead><tr><th>raised</th><th>highest</th><th>alarm</th>"
        "<th>worst value</th><th>cleared</th><th>acknowledged by</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _action_text(action: dict[str, Any]) -> str:
    detail = action["detail"]
    name = action["action"]
    if name == "note":
        return "note (see Notes)"
    if name == "dose" and detail.get("override_reason"):
        return f"dose, BP gate overridden: {detail['override_reason']}"
    if name == "session_end" and detail.get("reason"):
        return f"session closed: {detail['reason']}"
    extra = ", ".join(f"{k} {v}" for k, v in detail.items() if k != "text")
    return f"{name.replace('_', ' ')}{f' ({extra})' if extra else ''}"


def _log(d: _Data) -> str:
    """Alarm transitions, nurse actions, BP failures, gaps, device links and readiness."""
    entries: list[tuple[float, int, str, str, str, str]] = []
    for row in d.record.tables["alarms"]:
        unit = _unit(row["alarm_id"])
        value = (
            ""
            if row["value"] is None
            else f" {_num(row['value'])} {unit} (limit {_num(row.get('limit_value'))})"
        )
        device = f" ({row['device']})" if row.get("device") else ""
        entries.append(
            (
                row["t"],
                0,
                f"p-{row['priority']}",
                "alarm",
                f"{row['alarm_id']}{device} {row['priority']} {row['state']}{value}",
                "",
            )
        )
    entries.extend(
        (a["t"], 1, "", "action", _action_text(a), f"{a['user']} ({a['source']})")
        for a in d.actions
    )
    for row in d.record.tables["device_events"]:
        state = "connected" if row["connected"] else "lost"
        detail = f": {row['detail']}" if row["detail"] else ""
        entries.append((row["t"], 2, "", "device", f"{row['device']} {state}{detail}", ""))
    for t, data in d.record.events("nibp_failed"):
        entries.append((t, 2, "", "BP", f"measurement failed: {data.get('detail', '')}", ""))
    for until, data in d.record.events("gap"):
        since = local(d.wall(float(data["since_t"]))).strftime("%H:%M:%S")
        entries.append(
            (
                until,
                2,
                "no",
                "gap",
                f"no monitoring since {since} ({data.get('reason', 'unknown')})",
                "",
            )
        )
    for t, data in d.readiness:
        text = (
            "ready for discharge"
            if data["ready"]
            else ("no longer ready: " + ", ".join(data.get("unmet", [])))
        )
        entries.append((t, 3, "ok" if data["ready"] else "", "readiness", text, ""))
    entries.sort(key=lambda e: (e[0], e[1]))
    rows = "".join(
        f"<tr><td>{_e(d.when(t))}</td><td>{_e(kind)}</td><td class='{css}'>{_e(text)}</td>"
        f"<td>{_e(user)}</td></tr>"
        for t, _, css, kind, text, user in entries
    )
    return (
        "<h2>Alarm and action log</h2><table><thead><tr><th>time (since dose)</th><th>kind</th>"
        f"<th>what</th><th>user (via)</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _entry_text(a: dict[str, Any]) -> str:
    """A manual entry as a nurse reads it: its kind, then its values."""
    detail = dict(a["detail"])
    kind = str(detail.pop("kind", a["action"])).replace("_", " ")
    return f"{kind}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in detail.items())


def _notes(d: _Data) -> str:
    notes = [a for a in d.actions if a["action"] == "note"]
    manual = [a for a in d.actions if a["action"] == "entry" or a["action"].startswith("manual")]
    out = ["<h2>Notes and manual entries</h2>"]
    if not notes and not manual:
        out.append("<p>No notes or manual entries.</p>")
    rows = "".join(
        f"<tr><td>{_e(d.when(a['t']))}</td><td>{_e(a['user'])}</td>"
        f"<td class='note'>{_e(a['detail'].get('text', ''))}</td></tr>"
        for a in notes
    )
    rows += "".join(
        f"<tr><td>{_e(d.when(a['t']))}</td><td>{_e(a['user'])}</td>"
        f"<td>{_e(_entry_text(a))}</td></tr>"
        for a in manual
    )
    if rows:
        out.append(
            "<table><thead><tr><th>time (since dose)</th><th>user</th><th>entry</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(out)


def _nurse_checklists(d: _Data) -> str:
    """The checklists the nurses confirmed (pre-dose, discharge sign-off), as recorded."""
    done = [a for a in d.actions if a["action"] == "checklist"]
    if not done:
        return "<p class='muted'>No checklist was confirmed in the console.</p>"
    rows = "".join(
        f"<tr><td>{_e(d.when(a['t']))}</td><td>{_e(str(a['detail'].get('kind', '')))}</td>"
        f"<td>{_e(', '.join(a['detail'].get('checked', [])) or '-')}</td>"
        f"<td>{_e(', '.join(a['detail'].get('missing', [])) or '-')}"
        f"{' (overridden with a reason)' if 'override_reason' in a['detail'] else ''}</td>"
        f"<td>{_e(a['user'])}</td></tr>"
        for a in done
    )
    return (
        "<table><thead><tr><th>time (since dose)</th><th>checklist</th><th>confirmed</th>"
        f"<th>not confirmed</th><th>user</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _infusion(d: _Data) -> str:
    """The IV infusion, if the dose was the start of one: plan, pauses, stop, amount."""
    steps = [a for a in d.actions if a["action"].startswith("infusion_")]
    if not steps:
        return ""
    words = {
        "infusion_start": lambda x: (
            f"started: {x.get('planned_amount')} {x.get('unit')} planned over "
            f"{x.get('planned_min')} min"
        ),
        "infusion_pause": lambda x: f"paused after {x.get('infused_min')} min: {x.get('reason')}",
        "infusion_resume": lambda x: f"resumed after {x.get('paused_min')} min: {x.get('reason')}",
        "infusion_stop": lambda x: (
            f"stopped: {x.get('given_amount')} {x.get('unit')} given, infused "
            f"{x.get('infused_min')} min, paused {x.get('paused_min')} min"
        ),
    }
    rows = "".join(
        f"<tr><td>{_e(d.when(a['t']))}</td>"
        f"<td>{_e(words[a['action']](a['detail']) if a['action'] in words else a['action'])}</td>"
        f"<td>{_e(a['user'])}</td></tr>"
        for a in steps
    )
    return (
        "<h2>IV infusion</h2><table><thead><tr><th>time (since dose)</th><th>step</th>"
        f"<th>user</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _check(ok: bool | None, text: str) -> str:
    mark = {
        True: "<span class='ok'>☑</span>",
        False: "<span class='no'>☒</span>",
        None: "<span class='muted'>☐</span>",
    }[ok]
    return f"<li>{mark} {text}</li>"


def _checklists(d: _Data) -> str:
    s = d.session
    dosed = s.dose_t is not None
    pre = [bp for bp in d.bp if dosed and s.dose_t is not None and bp.t <= s.dose_t]
    gate, reason = d.dose_gate()
    b = d.baseline or {}
    at40 = d.bp_at_40()
    open_alarms = [o for o in d.occurrences if o.end_t is None]
    pre_dose = [
        _check(
            len(pre) >= _BASELINE_BP_READINGS if dosed else None,
            _e(f"Baseline BP measured at least twice before the dose ({len(pre)})"),
        ),
        _check(
            b.get("spo2") is not None and b.get("pr") is not None if dosed else None,
            "SpO2 and pulse-rate baseline captured",
        ),
        _check(
            (gate == "clear" or bool(reason)) if dosed else None,
            _e(f"BP gate at the dose: {gate}" + (", overridden with a reason" if reason else "")),
        ),
    ]
    monitoring = [
        _check(at40 is not None if dosed else None, "BP measured at dose + 40 min"),
        _check(
            not d.gaps,
            _e("No gap in monitoring" if not d.gaps else f"{len(d.gaps)} gap(s) in monitoring"),
        ),
        _check(
            not open_alarms,
            _e(
                "Every alarm cleared by the end"
                if not open_alarms
                else "Alarms still shown at the end: " + ", ".join(o.alarm_id for o in open_alarms)
            ),
        ),
    ]
    last = d.readiness[-1][1] if d.readiness else None
    unmet = set(last.get("unmet", [])) if last is not None else None
    discharge = [
        _check(None if unmet is None else key not in unmet, _e(label))
        for key, label in _READINESS_CRITERIA
    ]
    never = (
        ""
        if unmet is not None or not dosed
        else ("<p class='muted'>Readiness was never reached: every criterion is shown open.</p>")
    )
    return (
        "<h2>Checklists</h2><div class='keep'><h3>Before the dose</h3><ul>"
        + "".join(pre_dose)
        + "</ul></div><div class='keep'><h3>During monitoring</h3><ul>"
        + "".join(monitoring)
        + "</ul></div><div class='keep'><h3>Discharge criteria at the end</h3><ul>"
        + "".join(discharge)
        + f"</ul>{never}</div>"
    )


def _readiness(d: _Data) -> str:
    s = d.session
    if s.dose_t is None:
        return "<h2>Discharge readiness</h2><p>Not followed: no dose was marked.</p>"
    ready_t = d.ready_from()
    if ready_t is not None:
        text = (
            f"<p class='ok'><strong>Ready</strong> from {_e(d.when(ready_t))}, and still at "
            "the end. Readiness is shown to the nurse, never acted on.</p>"
        )
    else:
        text = (
            "<p class='no'><strong>Not ready</strong> at the end. Readiness is shown to the "
            "nurse, never acted on.</p>"
        )
    changes = "".join(
        f"<li>{_e(d.when(t))}: {'ready' if data['ready'] else 'not ready'}"
        f"{_e(' (' + ', '.join(data.get('unmet', [])) + ')') if data.get('unmet') else ''}</li>"
        for t, data in d.readiness
    )
    return f"<h2>Discharge readiness</h2>{text}<ul>{changes}</ul>"
