// sessiond clinic overview: every room on the broker as a tile, polled from /api/overview.
// Tiles are made once per room and updated in place, so their alarm flash runs steadily.
// A module of its own: it shares only common.js with the room console.

import { $, alarmMarks, setText } from "./common.js";

const POLL_MS = 1000;
const ALARM_NAMES = {
  spo2_low: "SpO\u2082 low", pr_high: "Pulse high", pr_low: "Pulse low", bp_high: "BP high",
  bp_low: "BP low", bp_rise: "BP rise", dose_gate: "Dose gate", sensor_off: "Sensor off",
  signal_poor: "Signal poor", device_lost: "Device lost", nibp_error: "NIBP error",
  nibp_overdue: "NIBP overdue", console_unwatched: "No console watching",
  monitor_fault: "Monitor fault", record_fault: "Record not written",
};
const tiles = new Map();

const show = (v) => (v === null || v === undefined ? "---" : String(v));

function consoleUrl(room) {
  const c = room.console;
  if (!c || !c.port) return null;
  const wildcard = !c.host || c.host === "0.0.0.0" || c.host === "::";
  const host = wildcard || ["127.0.0.1", "localhost", "::1"].includes(c.host) ? location.hostname : c.host;
  return `${c.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${c.port}/`;
}

function tile(id) {
  let t = tiles.get(id);
  if (t) return t;
  const li = document.createElement("li");
  li.className = "tile";
  li.dataset.room = id;
  const a = document.createElement("a");
  a.className = "tile-link";
  const name = document.createElement("h2");
  name.textContent = id;
  const phase = document.createElement("div");
  phase.className = "tile-phase";
  const vitals = document.createElement("div");
  vitals.className = "tile-vitals";
  const alarm = document.createElement("div");
  alarm.className = "tile-alarm";
  a.append(name, phase, vitals, alarm);
  li.append(a);
  t = { li, a, phase, vitals, alarm };
  tiles.set(id, t);
  return t;
}

function render(rooms) {
  const list = $("tiles");
  const ids = rooms.map((r) => r.room);
  for (const [id, t] of tiles) {
    if (!ids.includes(id)) {
      t.li.remove();
      tiles.delete(id);
    }
  }
  rooms.forEach((r, i) => {
    const t = tile(r.room);
    if (list.children[i] !== t.li) list.insertBefore(t.li, list.children[i] || null);
    const url = consoleUrl(r);
    if (url) t.a.href = url;
    else t.a.removeAttribute("href");
    const priority = r.alarm ? r.alarm.priority : "none";
    const cls = `tile alarm-${priority}${r.online ? "" : " offline"}`;
    if (t.li.className !== cls) t.li.className = cls;
    t.li.dataset.priority = priority;
    const since = r.minutes_since_dose === null ? "" : ` \u00b7 ${Math.floor(r.minutes_since_dose)} min since dose`;
    setText(t.phase, r.online ? `${r.phase || "no session"}${since}` : "offline");
    const bp = r.sys === null || r.sys === undefined ? "---/---" : `${r.sys}/${r.dia}`;
    setText(t.vitals, `SpO\u2082 ${show(r.spo2)} \u00b7 PR ${show(r.pr)} \u00b7 BP ${bp}`);
    let alarmText = "No alarms";
    if (r.alarm) {
      const name = ALARM_NAMES[r.alarm.id] || r.alarm.id;
      const marks = alarmMarks(r.alarm.id, r.alarm.priority);
      alarmText = `${marks} ${r.alarm.priority.toUpperCase()} ${name}${r.alarm.device ? `: ${r.alarm.device}` : ""}` +
        (r.alarms > 1 ? ` (+${r.alarms - 1})` : "");
    }
    setText(t.alarm, alarmText);
  });
}

async function poll() {
  try {
    const res = await fetch("/api/overview", { credentials: "same-origin" });
    if (res.status === 401) {
      $("overview-signin").hidden = false;
      setText($("overview-state"), "Not signed in");
      return;
    }
    const data = await res.json();
    $("overview-signin").hidden = true;
    render(data.rooms || []);
    setText($("overview-state"), data.mqtt
      ? `${(data.rooms || []).length} rooms \u00b7 live`
      : "No broker configured ([mqtt] enabled = false): no rooms to show");
    $("overview-state").dataset.state = "live";
  } catch {
    setText($("overview-state"), "Connection lost \u2014 tiles are not live");
    $("overview-state").dataset.state = "lost";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.addEventListener("DOMContentLoaded", poll);
