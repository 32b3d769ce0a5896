// The event log: what happened while this page watched (alarms, nurse actions, phases,
// devices), newest first, on the session's own clock.

import { $, RANK, clock } from "./common.js";
import { alarmName, alarmPrefix, valueText } from "./alarms.js";
import { stampText, state } from "./state.js";

// Entries the event log keeps (newest first).
const LOG_MAX = 200;

let logSeq = 0;

export function log(t, kind, text) {
  state.log.unshift({ seq: ++logSeq, t, kind, text });
  if (state.log.length > LOG_MAX) state.log.length = LOG_MAX;
}

// An alarm message as an event: raised, escalated, lowered, latched, back or cleared.
export function logAlarm(before, a) {
  const what = `${alarmPrefix(a)} ${alarmName(a)}`;
  let text;
  if (a.state === "cleared") text = `${alarmName(a)} cleared`;
  else if (!before) text = `${what} ${valueText(a)}`;
  else if (RANK[a.priority] > RANK[before.priority]) text = `${what} escalated ${valueText(a)}`;
  else if (RANK[a.priority] < RANK[before.priority]) text = `${what} (was ${before.priority}) ${valueText(a)}`;
  else if (a.state === "latched") text = `${what} latched: condition gone, stays until acknowledged`;
  else if (before.state === "latched") text = `${what} back ${valueText(a)}`;
  else return; // same priority and state: a value update, not an event
  log(a.t, a.state === "cleared" ? "cleared" : `alarm ${a.priority}`, text.trim());
}

const ACTION_TEXT = {
  session_start: (m) => `Session started (${(m.route || "").toUpperCase()})`,
  session_end: () => "Session ended",
  session_resume: () => "Session resumed after a restart",
  dose: (m) => `Dose marked${m.override ? " over the dose gate (reason in the record)" : ""}`,
  ack: (m) => `${alarmName({ id: m.alarm_id })} acknowledged`,
  pause: (m) => `Alarm audio paused${m.seconds ? ` for ${clock(m.seconds)}` : ""}`,
  note: () => "Note added",
  nibp_measure: () => "BP measurement asked",
  scene: (m) => `Scene: ${m.scene || "follow the phase"}${m.pinned ? " (pinned)" : ""}`,
  volume: (m) => `Volume ${m.volume_pct} %${m.pinned ? " (pinned)" : ""}`,
};

export function logAction(m) {
  const text = (ACTION_TEXT[m.action] || (() => m.action.replace(/_/g, " ")))(m);
  log(m.t, "action", `${text} \u00b7 ${m.user}`);
}

let logRendered = 0;

export function renderLog() {
  const list = $("event-log");
  // Only new entries are added (newest first); nothing already shown is rebuilt.
  const fresh = state.log.filter((e) => e.seq > logRendered);
  for (const e of fresh.reverse()) {
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    const stamp = document.createElement("time");
    stamp.textContent = stampText(e.t);
    const text = document.createElement("span");
    text.textContent = e.text;
    li.append(stamp, text);
    list.prepend(li);
    logRendered = e.seq;
  }
  while (list.children.length > LOG_MAX) list.lastElementChild.remove();
  $("event-log-empty").hidden = list.children.length > 0;
}

// Signed out: the log of the room goes with it.
export function clearLog() {
  logRendered = 0;
  $("event-log").replaceChildren();
}
