// Folding the server's messages into the state: the status snapshot first, then one message
// per event (DESIGN §6), and a draw on the next frame. Unknown types are ignored.

import { alarmName, alarmPrefix, announce, takeAck, takeAlarm } from "./alarms.js";
import { fetchEntries, readBackLater } from "./entries.js";
import { takeInfusion } from "./infusion.js";
import { log, logAction, logAlarm } from "./log.js";
import { clearChecklistEdits, takeChecklist } from "./session.js";
import { scheduleRender, state } from "./state.js";
import { clearTrend, fetchTrend, takePleth, trendAlarm, trendEntry, trendReading } from "./trends.js";
import { isBp, takeReading } from "./vitals.js";

function advance(t) {
  if (typeof t === "number" && (state.now === null || t > state.now)) state.now = t;
}

function takeStatus(msg) {
  state.room = msg.room;
  state.now = msg.t;
  state.session = msg.session ? { ...msg.session } : null;
  state.phase = msg.phase;
  state.timeline = msg.timeline || null;
  state.nibpSchedule = msg.nibp_schedule || null;
  state.pause = msg.audio_pause || null;
  state.baseline = msg.baseline || null;
  state.discharge = msg.discharge || null;
  state.nibpRequest = (msg.nibp && msg.nibp.last_request) || null;
  state.nibpFailure = (msg.nibp && msg.nibp.last_failure) || null;
  state.roomSetting = msg.room_setting || null;
  state.notes = msg.notes || { count: 0, last_t: null };
  state.alarmAudio = msg.alarm_audio || null;
  state.checklistItems = msg.checklist_items || { predose: [], discharge: [] };
  state.checklists = msg.checklists || {};
  state.predoseGate = Boolean(msg.predose_gate);
  fetchEntries().then(fetchTrend);
  state.oximeter = null;
  state.bp = null;
  const readings = Object.values(msg.readings || {}).sort((a, b) => a.t - b.t);
  readings.filter(isBp).forEach((r) => state.bpDevices.add(r.device));
  readings.forEach(takeReading);
  state.alarms = new Map((msg.alarms || []).map((a) => [a.id, { onset_t: a.t, ...a }]));
  state.devices = new Map(Object.entries(msg.devices || {}));
  for (const a of state.alarms.values()) {
    log(a.onset_t, `alarm ${a.priority}`, `${alarmPrefix(a)} ${alarmName(a)} shown (on connecting)`);
  }
}

export function handle(msg) {
  takeInfusion(msg);
  switch (msg.type) {
    case "status":
      takeStatus(msg);
      break;
    case "tick":
      state.now = msg.t;
      break;
    case "reading":
      takeReading(msg);
      trendReading(msg);
      break;
    case "pleth":
      takePleth(msg);
      return; // the waveform draws itself; nothing else changes
    case "alarm": {
      const before = takeAlarm(msg);
      logAlarm(before, msg);
      announce(before, msg);
      trendAlarm(msg, before);
      break;
    }
    case "phase":
      state.phase = msg.phase;
      if (state.session) state.session.ended_t = msg.phase === "ended" ? msg.t : null;
      log(msg.t, "phase", `Phase: ${msg.phase}`);
      break;
    case "session":
      // A new session is a new patient: nothing of the last one may show as theirs.
      state.session = {
        id: msg.session_id, route: msg.route, started_t: msg.t, dose_t: msg.dose_t ?? null,
      };
      state.oximeter = null;
      state.bp = null;
      state.baseline = null;
      state.discharge = null;
      state.nibpRequest = null;
      state.nibpFailure = null;
      state.notes = { count: 0, last_t: null };
      state.checklists = {};
      clearChecklistEdits();
      fetchEntries();
      clearTrend();
      break;
    case "action":
      logAction(msg);
      if (msg.action === "checklist") takeChecklist(msg);
      readBackLater(msg.action);
      trendEntry(msg);
      if (msg.action === "dose" && state.session) {
        state.session.dose_t = msg.t;
        state.session.dose_override = Boolean(msg.override);
      }
      // Only that a note was added: its text is in the record, not on the wall screen.
      if (msg.action === "note") state.notes = { count: state.notes.count + 1, last_t: msg.t };
      if (msg.action === "ack") takeAck(msg.alarm_id);
      break;
    case "device": {
      const before = state.devices.get(msg.device);
      state.devices.set(msg.device, { connected: msg.connected, detail: msg.detail });
      if (!before || before.connected !== msg.connected) {
        log(msg.t, "device", `${msg.device} ${msg.connected ? "connected" : `lost${msg.detail ? `: ${msg.detail}` : ""}`}`);
      }
      break;
    }
    case "audio_pause":
      state.pause = { paused: msg.paused, until_t: msg.until_t, reason: msg.reason };
      break;
    case "nibp_request":
      state.nibpRequest = { t: msg.t, reason: msg.reason };
      break;
    case "nibp_failed":
      state.nibpFailure = { t: msg.t, device: msg.device, detail: msg.detail };
      break;
    case "baseline":
      state.baseline = { t: msg.t, sys: msg.sys, dia: msg.dia, spo2: msg.spo2, pr: msg.pr };
      break;
    case "discharge_ready":
      state.discharge = { t: msg.t, ready: msg.ready, unmet: msg.unmet || [] };
      break;
    case "room":
      state.roomSetting = msg;
      break;
    case "infusion_prompt":
      break; // folded by takeInfusion
    default:
      return; // unknown types are ignored (DESIGN §6)
  }
  if (msg.type !== "status" && msg.type !== "tick") advance(msg.t);
  scheduleRender();
}
