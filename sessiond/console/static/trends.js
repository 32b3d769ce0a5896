// Trends and pleth, drawn with uPlot (vendored, loaded as a classic script before the page's
// modules: `uPlot` is a global of the window). The trend is the session as the record holds
// it, with live readings added between reads; the onset and effect windows are shaded, the
// dose is a line, alarms and manual entries are marks.

import { $, RANK, setText } from "./common.js";
import { state, windowsFor } from "./state.js";
import { isBp } from "./vitals.js";

// Live oximetry is folded into buckets this long (session seconds) between record reads.
const TREND_BUCKET_S = 5;
// Seconds of pleth on screen.
const PLETH_SECONDS = 5;
const PRIORITY_COLOUR = { high: "#ff6b6b", medium: "#fdd835", low: "#26c6da" };

const trend = {
  found: false,
  ox: [[], [], []], // t, spo2, pr
  bp: [[], [], []], // t, sys, dia
  marks: [], // { t, kind, colour, label }
  fetched: 0,
};
const charts = { vitals: null, bp: null, pleth: null };
// The charts are the window's to read as well (the tests check what they draw).
window.sessiondCharts = charts;
const pleth = { device: null, rate: 75, samples: [] };

function sessionWindows() {
  const s = state.session;
  if (!s || s.dose_t == null) return null;
  const w = windowsFor(s.route);
  return { dose: s.dose_t, onset: s.dose_t + w.onset_min * 60, effect: s.dose_t + w.effect_end_min * 60 };
}

// Onset and effect windows shaded, the dose as a line, alarms and entries as marks.
function decorations(u) {
  const ctx = u.ctx;
  const { top, height } = u.bbox;
  const x = (t) => u.valToPos(t, "x", true);
  const win = sessionWindows();
  ctx.save();
  if (win) {
    const shade = (a, b, colour) => {
      const x0 = Math.max(u.bbox.left, x(a));
      const x1 = Math.min(u.bbox.left + u.bbox.width, x(b));
      if (x1 > x0) {
        ctx.fillStyle = colour;
        ctx.fillRect(x0, top, x1 - x0, height);
      }
    };
    shade(win.dose, win.onset, "rgba(141, 90, 18, 0.28)");
    shade(win.onset, win.effect, "rgba(94, 58, 110, 0.32)");
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.beginPath();
    ctx.moveTo(x(win.dose), top);
    ctx.lineTo(x(win.dose), top + height);
    ctx.stroke();
  }
  for (const m of trend.marks) {
    const px = x(m.t);
    if (px < u.bbox.left || px > u.bbox.left + u.bbox.width) continue;
    ctx.fillStyle = m.colour;
    ctx.beginPath();
    const size = 6 * devicePixelRatio;
    if (m.kind === "alarm") {
      ctx.moveTo(px - size, top);
      ctx.lineTo(px + size, top);
      ctx.lineTo(px, top + size * 1.6);
    } else {
      ctx.moveTo(px - size, top + height);
      ctx.lineTo(px + size, top + height);
      ctx.lineTo(px, top + height - size * 1.6);
    }
    ctx.fill();
  }
  ctx.restore();
}

function chartWidth(id) {
  return Math.max(200, $(id).clientWidth || 600);
}

function axisTime(u, values) {
  const s = state.session;
  const origin = s ? (s.dose_t ?? s.started_t) : 0;
  const label = s && s.dose_t != null ? "dose" : "T";
  return values.map((v) => {
    const m = Math.round((v - origin) / 60);
    return `${label}${m >= 0 ? "+" : "\u2212"}${Math.abs(m)}m`;
  });
}

function makeCharts() {
  if (charts.vitals || !window.uPlot || $("room-view").hidden) return;
  const axis = { stroke: "#98a2ae", grid: { stroke: "#2a3340" }, ticks: { stroke: "#2a3340" } };
  const base = (id, height) => ({
    width: chartWidth(id), height,
    scales: { x: { time: false } },
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    hooks: { draw: [decorations] },
  });
  charts.vitals = new window.uPlot({
    ...base("trend-vitals", 200),
    scales: { x: { time: false }, spo2: { range: [70, 100] }, pr: { range: [30, 180] } },
    series: [
      {},
      { label: "SpO\u2082 %", scale: "spo2", stroke: "#4fc3f7", width: 2, spanGaps: false },
      { label: "PR bpm", scale: "pr", stroke: "#69d36e", width: 2, spanGaps: false },
    ],
    axes: [
      { ...axis, values: axisTime },
      { ...axis, scale: "spo2", label: "SpO\u2082 %" },
      { ...axis, scale: "pr", side: 1, label: "PR", grid: { show: false } },
    ],
  }, trend.ox, $("trend-vitals"));
  charts.bp = new window.uPlot({
    ...base("trend-bp", 160),
    scales: { x: { time: false }, mmhg: { range: [40, 220] } },
    series: [
      {},
      { label: "SYS", scale: "mmhg", stroke: "#ffb74d", width: 2, points: { show: true, size: 7 } },
      { label: "DIA", scale: "mmhg", stroke: "#ce93d8", width: 2, points: { show: true, size: 7 } },
    ],
    axes: [{ ...axis, values: axisTime }, { ...axis, scale: "mmhg", label: "mmHg" }],
  }, trend.bp, $("trend-bp"));
  window.addEventListener("resize", () => {
    for (const [name, id] of [["vitals", "trend-vitals"], ["bp", "trend-bp"], ["pleth", "pleth-chart"]]) {
      if (charts[name]) charts[name].setSize({ width: chartWidth(id), height: charts[name].height });
    }
  });
}

// The session's trend as the record holds it (a reload draws the whole session again).
export async function fetchTrend() {
  if (!state.user) return;
  const ask = ++trend.fetched;
  let data;
  try {
    const res = await fetch(`/api/session/trend?points=${Math.min(2000, Math.max(100, chartWidth("trend-vitals")))}`, { credentials: "same-origin" });
    if (!res.ok || ask !== trend.fetched) return;
    data = await res.json();
  } catch {
    return;
  }
  trend.found = Boolean(data.found);
  const ox = data.oximetry || [];
  trend.ox = [ox.map((p) => p[0]), ox.map((p) => p[1]), ox.map((p) => p[2])];
  const bp = data.bp || [];
  trend.bp = [bp.map((r) => r.t), bp.map((r) => r.sys), bp.map((r) => r.dia)];
  trend.marks = (data.alarms || [])
    .filter((a) => a.state === "active")
    .map((a) => ({ t: a.t, kind: "alarm", colour: PRIORITY_COLOUR[a.priority] || "#fff", label: a.id }));
  for (const r of bp.filter((r) => r.device === "manual")) trend.marks.push({ t: r.t, kind: "entry", colour: "#e6edf3", label: "BP by hand" });
  for (const e of state.entries.filter((e) => e.action === "entry" && e.kind !== "bp")) {
    trend.marks.push({ t: e.t, kind: "entry", colour: "#e6edf3", label: e.kind });
  }
  drawTrend();
}

function drawTrend() {
  makeCharts();
  if (!charts.vitals) return;
  charts.vitals.setData(trend.ox);
  charts.bp.setData(trend.bp);
}

// A live reading joins the trend between reads of the record.
export function trendReading(r) {
  if (!state.session || r.t < state.session.started_t) return;
  if (isBp(r)) {
    if (r.sys === undefined || r.dia === undefined) return;
    trend.bp[0].push(r.t);
    trend.bp[1].push(r.sys);
    trend.bp[2].push(r.dia);
    if (r.device === "manual") trend.marks.push({ t: r.t, kind: "entry", colour: "#e6edf3", label: "BP by hand" });
    return;
  }
  if ((r.flags || []).some((f) => ["sensor_off", "no_sensor", "searching", "artifact"].includes(f))) return;
  if (r.spo2 === undefined && r.pr === undefined) return;
  const [ts, spo2, pr] = trend.ox;
  const last = ts.length - 1;
  if (last >= 0 && r.t - ts[last] < TREND_BUCKET_S) {
    if (r.spo2 !== undefined) spo2[last] = spo2[last] == null ? r.spo2 : Math.min(spo2[last], r.spo2);
    if (r.pr !== undefined) pr[last] = pr[last] == null ? r.pr : Math.max(pr[last], r.pr);
  } else {
    ts.push(r.t);
    spo2.push(r.spo2 ?? null);
    pr.push(r.pr ?? null);
  }
}

export function trendAlarm(a, before) {
  if (a.state === "active" && (!before || RANK[a.priority] > RANK[before.priority])) {
    trend.marks.push({ t: a.t, kind: "alarm", colour: PRIORITY_COLOUR[a.priority] || "#fff", label: a.id });
  }
}

// A new session is a new patient: nothing of the last one stays on the trend.
export function clearTrend() {
  trend.ox = [[], [], []];
  trend.bp = [[], [], []];
  trend.marks = [];
}

// A manual entry (other than a BP, which is a reading) is a mark at its time.
export function trendEntry(msg) {
  if (msg.action === "entry" && msg.kind !== "bp") {
    trend.marks.push({ t: msg.t, kind: "entry", colour: "#e6edf3", label: msg.kind });
  }
}

let trendDrawn = 0;

export function renderTrends() {
  // Redrawn at most once a second: a chart of a whole session needs no more.
  const now = performance.now();
  if (now - trendDrawn < 1000) return;
  trendDrawn = now;
  drawTrend();
}

export function takePleth(msg) {
  if (pleth.device !== msg.device) {
    pleth.device = msg.device;
    pleth.samples = [];
  }
  pleth.rate = msg.rate_hz || pleth.rate || 75;
  pleth.samples.push(...msg.samples);
  const keep = Math.round(pleth.rate * PLETH_SECONDS);
  if (pleth.samples.length > keep) pleth.samples.splice(0, pleth.samples.length - keep);
  $("pleth-panel").hidden = false;
  setText($("pleth-device"), `${msg.device} \u00b7 ${Math.round(pleth.rate)} Hz`);
  if (!charts.pleth && window.uPlot) {
    charts.pleth = new window.uPlot({
      width: chartWidth("pleth-chart"), height: 120,
      scales: { x: { time: false }, y: { auto: true } },
      legend: { show: false },
      cursor: { show: false },
      series: [{}, { stroke: "#4fc3f7", width: 2 }],
      axes: [{ show: false }, { show: false }],
    }, [[], []], $("pleth-chart"));
  }
  if (charts.pleth) {
    const n = pleth.samples.length;
    charts.pleth.setData([Array.from({ length: n }, (_, i) => i / pleth.rate), pleth.samples]);
  }
}
