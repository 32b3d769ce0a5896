// The alarm panel: the list of active alarms with acknowledge, the numerics coloured by their
// alarms, the screen-reader announcer, and alarm audio pause. Alarm names and texts are here
// too (the event log writes them). The sound itself is sound.js.

import { $, RANK, TECHNICAL, alarmMarks, clock, number, setAttr, setText } from "./common.js";
import { command } from "./api.js";
import { state } from "./state.js";
import { bpText, oximeterValue } from "./vitals.js";

// Alarm ids of DESIGN §5: what a nurse reads, and the unit of value and limit.
const ALARMS = {
  spo2_low: ["SpO\u2082 low", "%"],
  pr_high: ["Pulse high", "bpm"],
  pr_low: ["Pulse low", "bpm"],
  bp_high: ["BP high", "mmHg"],
  bp_low: ["BP low", "mmHg"],
  bp_rise: ["BP rise", "mmHg"],
  dose_gate: ["Dose gate (BP)", "mmHg"],
  sensor_off: ["SpO\u2082 sensor off", ""],
  signal_poor: ["SpO\u2082 signal poor", ""],
  device_lost: ["Device lost", ""],
  nibp_error: ["NIBP error", ""],
  nibp_overdue: ["NIBP overdue", ""],
  console_unwatched: ["No console watching", ""],
  monitor_fault: ["Monitor fault", ""],
  record_fault: ["Record not written", ""],
};
// Which numeric an alarm belongs to: the numeric itself carries the alarm's colour and
// flash (as a bedside monitor's does), not only the list.
const ALARM_TILE = {
  spo2_low: "spo2-tile", sensor_off: "spo2-tile", signal_poor: "spo2-tile",
  pr_high: "pr-tile", pr_low: "pr-tile",
  bp_high: "bp-tile", bp_low: "bp-tile", bp_rise: "bp-tile", dose_gate: "bp-tile",
};
const TILES = ["spo2-tile", "pr-tile", "bp-tile"];
// The live value an alarm is about, so its text follows the patient, not its onset.
const LIVE_VALUE = {
  spo2_low: () => oximeterValue("spo2"),
  pr_high: () => oximeterValue("pr"),
  pr_low: () => oximeterValue("pr"),
  bp_low: () => (state.bp && state.bp.sys !== undefined ? number(state.bp.sys) : null),
  bp_high: () => bpText(),
  bp_rise: () => bpText(),
  dose_gate: () => bpText(),
};

// ---- folding alarm messages ----------------------------------------------------------------

// An alarm message into the list; returns the alarm as it was before (undefined: new).
export function takeAlarm(msg) {
  const before = state.alarms.get(msg.id);
  // An acknowledgement holds for one occurrence at its priority (as RoomStatus does).
  const keep = before && msg.state !== "cleared" && RANK[msg.priority] <= RANK[before.priority];
  if (msg.state === "cleared") state.alarms.delete(msg.id);
  else {
    state.alarms.set(msg.id, {
      ...msg,
      acknowledged: Boolean(keep && before.acknowledged),
      onset_t: before ? before.onset_t : msg.t,
    });
  }
  return before;
}

// A nurse's acknowledgement (an `ack` action) of an alarm still shown.
export function takeAck(alarmId) {
  if (state.alarms.has(alarmId)) {
    state.alarms.set(alarmId, { ...state.alarms.get(alarmId), acknowledged: true });
  }
}

// ---- what an alarm is called ---------------------------------------------------------------

export function alarmPrefix(a) {
  return `${alarmMarks(a.id, a.priority)} ${a.priority.toUpperCase()}`;
}

export function alarmName(a) {
  const [name] = ALARMS[a.id] || [a.id.replace(/_/g, " ")];
  return a.device && TECHNICAL.has(a.id) ? `${name}: ${a.device}` : name;
}

// The value and limit an alarm message carries (as it was at that moment).
export function valueText(a) {
  const [, unit] = ALARMS[a.id] || ["", ""];
  const u = unit ? ` ${unit}` : "";
  const bits = [];
  if (a.value !== undefined) bits.push(`${number(a.value)}${u}`);
  if (a.limit !== undefined) bits.push(`(limit ${number(a.limit)}${u})`);
  return bits.join(" ");
}

// What the alarm is about now: the live value and its limit, or that the condition is gone.
function alarmDetail(a) {
  const [, unit] = ALARMS[a.id] || ["", ""];
  const u = unit ? ` ${unit}` : "";
  const limit = a.limit !== undefined ? ` (limit ${number(a.limit)}${u})` : "";
  if (a.state === "latched") return a.limit !== undefined ? `limit ${number(a.limit)}${u}` : "";
  const live = LIVE_VALUE[a.id] ? LIVE_VALUE[a.id]() : null;
  if (live !== null) return `${live}${u}${limit}`;
  if (a.value !== undefined) return `${number(a.value)}${u}${limit}`;
  return "";
}

// New alarms and escalations are announced once; the list itself updates quietly.
export function announce(before, a) {
  if (a.state !== "cleared" && (!before || RANK[a.priority] > RANK[before.priority])) {
    $("alarm-announcer").textContent = `${a.priority} priority alarm: ${alarmName(a)} ${valueText(a)}`;
  }
}

export function clearAnnouncer() {
  $("alarm-announcer").textContent = "";
}

// ---- the list --------------------------------------------------------------------------------

const alarmRows = new Map();

function alarmRow(id) {
  let row = alarmRows.get(id);
  if (row) return row;
  const li = document.createElement("li");
  li.dataset.alarmId = id;
  const prio = document.createElement("span");
  prio.className = "prio";
  const name = document.createElement("span");
  name.className = "name";
  const detail = document.createElement("span");
  detail.className = "detail";
  const since = document.createElement("span");
  since.className = "since";
  const st = document.createElement("span");
  st.className = "state";
  // One button for the alarm's whole life: focus and a slow click are never lost to a redraw.
  const ack = document.createElement("button");
  ack.type = "button";
  ack.className = "ack";
  ack.textContent = "Acknowledge";
  ack.dataset.testid = `ack-${id}`;
  ack.addEventListener("click", () => acknowledge(id));
  li.append(prio, name, detail, since, st, ack);
  row = { li, prio, name, detail, since, st, ack };
  alarmRows.set(id, row);
  return row;
}

const acking = new Set();

async function acknowledge(id) {
  if (acking.has(id)) return;
  acking.add(id);
  try {
    await command("/api/alarms/ack", { id });
  } finally {
    acking.delete(id);
  }
}

export function renderAlarms() {
  const list = $("alarms");
  const alarms = [...state.alarms.values()].sort(
    (a, b) => (RANK[b.priority] || 0) - (RANK[a.priority] || 0) || a.onset_t - b.onset_t,
  );
  for (const [id, row] of alarmRows) {
    if (!state.alarms.has(id)) {
      row.li.remove();
      alarmRows.delete(id);
    }
  }
  const tiles = {};
  alarms.forEach((a, i) => {
    const row = alarmRow(a.id);
    // Moved only when the order changes (a new or escalated alarm): a move restarts a flash.
    if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
    const latched = a.state === "latched";
    setAttr(row.li, "class", `alarm ${a.priority}${latched ? " latched" : ""}${a.acknowledged ? " acked" : ""}`);
    setAttr(row.li, "data-priority", a.priority);
    setAttr(row.li, "data-state", a.state);
    setText(row.prio, alarmPrefix(a));
    setText(row.name, alarmName(a));
    setText(row.detail, alarmDetail(a));
    setText(row.since, state.now === null ? "" : `for ${clock(state.now - a.onset_t)}`);
    setText(row.st, [latched ? "latched (condition gone)" : "", a.acknowledged ? "acknowledged" : ""]
      .filter(Boolean)
      .join(" \u00b7 "));
    row.ack.hidden = !state.user || a.acknowledged;
    setAttr(row.ack, "aria-label", `Acknowledge ${alarmName(a)}`);
    const tile = ALARM_TILE[a.id];
    if (tile && (RANK[a.priority] || 0) > (RANK[tiles[tile]] || 0)) tiles[tile] = a.priority;
  });
  $("no-alarms").hidden = alarms.length > 0;
  for (const tile of TILES) {
    for (const p of ["high", "medium", "low"]) {
      const el = $(tile);
      if (el.classList.contains(`alarm-${p}`) !== (tiles[tile] === p)) el.classList.toggle(`alarm-${p}`);
    }
  }
}

// ---- alarm audio pause (the list stays on) -------------------------------------------------

export function renderPause() {
  const p = state.pause;
  const now = state.now;
  const paused = Boolean(p && p.paused && (p.until_t === null || now === null || p.until_t > now));
  const el = $("audio-state");
  el.dataset.paused = String(paused);
  if (paused) {
    el.textContent = p.until_t === null || now === null
      ? "Alarm audio paused"
      : `Alarm audio paused \u00b7 resumes in ${clock(p.until_t - now)}`;
  } else {
    // Say why a pause ended early (a new high alarm); a pause that ran out needs no words.
    const early = p && p.reason && !["nurse", "timeout"].includes(p.reason);
    el.textContent = early ? `Alarm audio on (pause ended: ${p.reason})` : "Alarm audio on";
  }
  const btn = $("pause-audio");
  btn.setAttribute("aria-pressed", String(paused));
  btn.textContent = paused ? "Audio paused" : "Pause alarm audio";
  btn.disabled = state.busy || !state.user || paused;
}

export function bindAlarms() {
  $("pause-audio").addEventListener("click", async () => {
    await command("/api/alarms/pause", {});
  });
}
