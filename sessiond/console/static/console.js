// sessiond nurse console: live room view over a WebSocket, commands over the JSON API.
// Plain browser JavaScript, no build step and no external resources (the clinic may be offline).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const RANK = { high: 3, medium: 2, low: 1 };
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
  // Technical alarms report the equipment: `!` prefixes instead of `*` (clinical.md §4.5).
  const TECHNICAL = new Set([
    "sensor_off", "signal_poor", "device_lost", "nibp_error", "nibp_overdue",
    "console_unwatched", "monitor_fault", "record_fault",
  ]);
  // What each unmet discharge criterion means, in plain words.
  const UNMET = {
    "time since dose": "Not long enough since the dose yet",
    "alarm shown": "An alarm is shown",
    spo2: "SpO\u2082 has not stayed at target for the whole window",
    bp: "Last blood pressure not close enough to baseline",
    pr: "Pulse rate not close enough to baseline",
    "infusion running": "The infusion is still running",
    "time since infusion stop": "Not long enough since the infusion stopped yet",
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
  // Entries the event log keeps (newest first).
  const LOG_MAX = 200;
  // Nurse actions the record reads back in "Notes and entries".
  const ENTRY_ACTIONS = new Set(["note", "entry", "checklist", "dose", "session_start", "session_end"]);
  // A nurse action's row is read back from the record this long after its event.
  const ENTRY_READ_DELAY_MS = 400;
  // Readings of the BP schedule listed ahead at most.
  const PLAN_MAX = 6;
  const DEFAULT_WINDOWS = { onset_min: 30, effect_end_min: 150 };
  // A BP request unanswered this long (session seconds) no longer shows as measuring.
  const MEASURING_S = 180;
  // Session seconds without an oximeter reading before its numbers stop looking current.
  const STALE_S = 10;
  // Ticks come every second: this long without any message means the link is dead.
  const SILENCE_MS = 5000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // The server closes a live socket with this code when its sign-in ends.
  const WS_SIGNED_OUT = 4401;

  const state = {
    room: null,
    now: null,
    session: null,
    phase: null,
    oximeter: null,
    bp: null,
    bpDevices: new Set(),
    alarms: new Map(),
    devices: new Map(),
    timeline: null,
    nibpSchedule: null,
    pause: null,
    baseline: null,
    discharge: null,
    nibpRequest: null,
    nibpFailure: null,
    roomSetting: null,
    notes: { count: 0, last_t: null },
    // undefined: not known yet; null: signed out.
    user: undefined,
    busy: false,
    live: false,
    log: [],
    checklistItems: { predose: [], discharge: [] },
    checklists: {},
    predoseGate: false,
    entries: [],
  };
  // Boxes a nurse is ticking: kept until confirmed, not overwritten by live updates.
  const checklistEdits = { predose: null, discharge: null };

  // Forget everything of the room (signed out: nothing may stay on screen).
  function resetRoom() {
    Object.assign(state, {
      checklists: {}, entries: [],
      room: null, now: null, session: null, phase: null, oximeter: null, bp: null,
      alarms: new Map(), devices: new Map(), pause: null, baseline: null, discharge: null,
      nibpRequest: null, nibpFailure: null, roomSetting: null, notes: { count: 0, last_t: null },
      log: [],
    });
    logRendered = 0;
    $("event-log").replaceChildren();
    $("alarm-announcer").textContent = "";
  }
  // Inputs a nurse is editing are not overwritten by live updates until sent.
  const editing = { volume: false };

  // ---- folding server messages into state -------------------------------------------------

  const isBp = (r) => "sys" in r || "dia" in r || "map" in r;

  function takeReading(r) {
    if (isBp(r)) {
      state.bpDevices.add(r.device);
      state.bp = r;
    } else if (!state.bpDevices.has(r.device)) {
      state.oximeter = r;
    }
  }

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

  // ---- the event log (what happened while this page watched) -------------------------------

  let logSeq = 0;

  function log(t, kind, text) {
    state.log.unshift({ seq: ++logSeq, t, kind, text });
    if (state.log.length > LOG_MAX) state.log.length = LOG_MAX;
  }

  function alarmPrefix(a) {
    return `${(TECHNICAL.has(a.id) ? "!" : "*").repeat(RANK[a.priority] || 1)} ${a.priority.toUpperCase()}`;
  }

  function alarmName(a) {
    const [name] = ALARMS[a.id] || [a.id.replace(/_/g, " ")];
    return a.device && TECHNICAL.has(a.id) ? `${name}: ${a.device}` : name;
  }

  function valueText(a) {
    const [, unit] = ALARMS[a.id] || ["", ""];
    const u = unit ? ` ${unit}` : "";
    const bits = [];
    if (a.value !== undefined) bits.push(`${number(a.value)}${u}`);
    if (a.limit !== undefined) bits.push(`(limit ${number(a.limit)}${u})`);
    return bits.join(" ");
  }

  function logAlarm(before, a) {
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
    if (a.state !== "cleared" && (!before || RANK[a.priority] > RANK[before.priority])) {
      $("alarm-announcer").textContent = `${a.priority} priority alarm: ${alarmName(a)} ${valueText(a)}`;
    }
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

  function logAction(m) {
    const text = (ACTION_TEXT[m.action] || (() => m.action.replace(/_/g, " ")))(m);
    log(m.t, "action", `${text} \u00b7 ${m.user}`);
  }

  let logRendered = 0;

  function renderLog() {
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

  // Log times on the session's own clock: T+ since the session started.
  function stampText(t) {
    const s = state.session;
    if (s && t >= s.started_t) return `T+${clock(t - s.started_t)}`;
    return state.now === null ? "" : `${clock(state.now - t)} before`;
  }

  function handle(msg) {
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
        logAlarm(before, msg);
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
        checklistEdits.predose = checklistEdits.discharge = null;
        fetchEntries();
        trend.ox = [[], [], []];
        trend.bp = [[], [], []];
        trend.marks = [];
        break;
      case "action":
        logAction(msg);
        if (msg.action === "checklist") {
          state.checklists = { ...state.checklists, [msg.kind]: {
            t: msg.t, user: msg.user, checked: msg.checked || [], missing: msg.missing || [],
            override: Boolean(msg.override),
          } };
          checklistEdits[msg.kind] = null;
        }
        // The event may come before its row is committed: read back a moment later (and
        // again when our own command answers, which the daemon does once it is on disk).
        if (ENTRY_ACTIONS.has(msg.action)) setTimeout(fetchEntries, ENTRY_READ_DELAY_MS);
        if (msg.action === "entry" && msg.kind !== "bp") {
          trend.marks.push({ t: msg.t, kind: "entry", colour: "#e6edf3", label: msg.kind });
        }
        if (msg.action === "dose" && state.session) {
          state.session.dose_t = msg.t;
          state.session.dose_override = Boolean(msg.override);
        }
        // Only that a note was added: its text is in the record, not on the wall screen.
        if (msg.action === "note") state.notes = { count: state.notes.count + 1, last_t: msg.t };
        if (msg.action === "ack" && state.alarms.has(msg.alarm_id)) {
          state.alarms.set(msg.alarm_id, { ...state.alarms.get(msg.alarm_id), acknowledged: true });
        }
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

  // ---- rendering ---------------------------------------------------------------------------

  let renderPending = false;
  function scheduleRender() {
    // Readings can arrive at 75 Hz (and 60x that in simulation): draw once per frame.
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      render();
    });
  }

  const label = (flag) => flag.replace(/_/g, " ");

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  const number = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

  function renderVital(key) {
    const r = state.oximeter;
    const value = r ? r[key] : undefined;
    const flags = r ? r.flags || [] : [];
    const stale = r !== null && state.now !== null && state.now - r.t > STALE_S;
    const el = $(key);
    const missing = value === undefined || value === null || stale;
    setText(el, missing ? "---" : number(value));
    el.classList.toggle("missing", missing);
    el.classList.toggle("flagged", flags.length > 0);
    el.classList.toggle("stale", stale);
    let note = flags.map(label).join(" \u00b7 ");
    if (stale) note = "no recent data";
    else if (r === null) note = "no data";
    setText($(`${key}-flags`), note);
  }

  const ago = (t) => (state.now === null ? "" : `${clock(state.now - t)} ago`);

  // A current, valid oximeter value as text, or null.
  function oximeterValue(key) {
    const r = state.oximeter;
    if (!r || r[key] === undefined || r[key] === null || (r.flags || []).length) return null;
    if (state.now !== null && state.now - r.t > STALE_S) return null;
    return number(r[key]);
  }

  function bpText() {
    const r = state.bp;
    return r && r.sys !== undefined && r.dia !== undefined ? `${number(r.sys)}/${number(r.dia)}` : null;
  }

  // Writes that change nothing are skipped: the DOM (and its animations) stay as they are.
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }
  const show = (v) => (v === undefined || v === null ? "---" : number(v));

  function renderBp() {
    const r = state.bp;
    if (!r) {
      $("bp").textContent = "---/---";
      $("bp-map").textContent = "MAP ---";
      $("bp-detail").textContent = "no measurement yet";
    } else {
      $("bp").textContent = `${show(r.sys)}/${show(r.dia)}`;
      $("bp-map").textContent = `MAP ${show(r.map)}`;
      const parts = [];
      if (state.now !== null) parts.push(ago(r.t));
      if (r.pr !== undefined) parts.push(`PR ${r.pr}`);
      if ((r.flags || []).length) parts.push(r.flags.map(label).join(", "));
      $("bp-detail").textContent = parts.join(" \u00b7 ");
    }
    renderBpSchedule();
  }

  function renderBpSchedule() {
    const req = state.nibpRequest;
    const fail = state.nibpFailure;
    const lastBp = state.bp && state.bp.sys !== undefined ? state.bp.t : null;
    let text = "\u2014";
    if (req) {
      // Asked, and neither a result nor a failure since: the cuff is (about to be) inflating.
      const answered = (lastBp !== null && lastBp >= req.t) || (fail && fail.t >= req.t);
      const measuring = !answered && state.now !== null && state.now - req.t < MEASURING_S;
      text = `${measuring ? "measuring\u2026 " : ""}${ago(req.t)} (${req.reason})`;
    }
    $("bp-request").textContent = text;
    $("bp-request").dataset.measuring = String(text.startsWith("measuring"));
    const next = nextBpDue(req, lastBp);
    let nextText = "\u2014";
    if (next !== null && state.now !== null) {
      nextText = next <= state.now ? "due now" : `in about ${clock(next - state.now)}`;
    }
    $("bp-next").textContent = nextText;
    const failEl = $("bp-failure");
    failEl.hidden = !fail;
    if (fail) {
      const resolved = lastBp !== null && lastBp > fail.t;
      failEl.textContent = `Last failure ${ago(fail.t)}: ${fail.detail || "no result"}${resolved ? " (a reading has come since)" : ""}`;
      failEl.classList.toggle("resolved", resolved);
    }
  }

  // When the monitor's schedule will next ask (its own rule: one phase interval after the
  // later of the last request and the last valid reading, or a forced reading after the dose).
  function nextBpDue(req, lastBp) {
    const sched = state.nibpSchedule;
    const s = state.session;
    if (!sched || !s || !req || !state.phase || state.phase === "ended") return null;
    const interval = infusionIntervalMin() ?? sched.interval_min[state.phase];
    let next = interval === undefined ? Infinity : Math.max(req.t, lastBp ?? -Infinity) + interval * 60;
    if (s.dose_t !== null && s.dose_t !== undefined && state.now !== null) {
      for (const m of sched.forced_after_dose_min || []) {
        const forced = s.dose_t + m * 60;
        if (forced > state.now) next = Math.min(next, forced);
      }
    }
    return Number.isFinite(next) ? next : null;
  }

  function renderBaseline() {
    const b = state.baseline;
    const el = $("baseline");
    el.dataset.captured = String(Boolean(b));
    if (!b) {
      el.textContent = state.session && state.session.dose_t != null ? "not available" : "not captured yet";
    } else {
      const bp = b.sys === null || b.dia === null ? "BP ---" : `BP ${Math.round(b.sys)}/${Math.round(b.dia)}`;
      el.textContent = `${bp} \u00b7 SpO\u2082 ${b.spo2 === null ? "---" : `${Math.round(b.spo2)} %`} \u00b7 PR ${b.pr === null ? "---" : Math.round(b.pr)}`;
    }
    $("dose-override").hidden = !(state.session && state.session.dose_override);
  }

  function effectLeftMin() {
    const s = state.session;
    if (!s || s.dose_t == null || state.now === null) return 0;
    const w = windowsFor(s.route);
    return Math.ceil(w.effect_end_min - (state.now - s.dose_t) / 60);
  }

  function renderDischarge() {
    const s = state.session;
    const ended = state.phase === "ended";
    // Readiness belongs to a running session: after End it says nothing more.
    let d = ended ? null : state.discharge;
    const el = $("discharge");
    const list = $("discharge-unmet");
    const unmet = d ? d.unmet.join("|") : "";
    if (list.dataset.unmet !== unmet) {
      list.dataset.unmet = unmet;
      list.replaceChildren();
    } else if (d) {
      d = { ...d, unmet: [] }; // already listed
    }
    let ready = "none";
    let text = ended ? "session ended" : "no session";
    if (d) {
      ready = d.ready ? "ready" : "not-ready";
      text = d.ready ? "Ready for discharge" : "Not ready";
      // One story with the phase: the criteria may be met while the drug's effect window
      // still runs (a route minimum shorter than the window); say both.
      const left = effectLeftMin();
      if (d.ready && (state.phase === "onset" || state.phase === "effect")) {
        ready = "pending";
        text = left > 0
          ? `Criteria met \u00b7 effect window ends in ${left} min`
          : "Criteria met \u00b7 still in the effect phase";
      }
      for (const key of d.unmet) {
        const li = document.createElement("li");
        li.dataset.criterion = key;
        li.textContent = UNMET[key] || label(key);
        list.append(li);
      }
    } else if (s && state.phase !== "ended") {
      ready = "not-ready";
      text = s.dose_t == null ? "Not ready: no dose yet" : "Not ready";
    }
    el.dataset.ready = ready;
    setText(el, text);
  }

  function renderNotes() {
    const n = state.notes;
    $("notes-info").textContent =
      n.count === 0 ? "no notes" : `${n.count} note${n.count === 1 ? "" : "s"} \u00b7 last ${n.last_t === null ? "" : ago(n.last_t)}`;
  }

  function renderRoom() {
    const r = state.roomSetting;
    const over = $("room-override");
    if (!r) {
      over.dataset.override = "none";
      over.textContent = "no room report yet";
      $("room-scene").textContent = "\u2014";
      $("room-light").textContent = "\u2014";
      $("room-music").textContent = "\u2014";
    } else {
      over.dataset.override = r.override || "phase";
      over.textContent =
        r.override === "alarm"
          ? `Alarm override: clinical light${r.ducked ? ", music ducked" : ""}`
          : r.override === "manual"
            ? `Manual setting${r.pinned ? " (pinned)" : " until the next phase"}`
            : "Following the phase";
      $("room-scene").textContent = r.scene;
      $("room-light").textContent = `${number(r.light_pct)} % \u00b7 ${r.colour_temp_k} K`;
      const music = r.playlist ? r.playlist : "no music";
      $("room-music").textContent = `${music} \u00b7 volume ${r.volume_pct} %${r.ducked ? " (ducked)" : ""}`;
      if (!editing.volume) {
        $("volume").value = String(r.volume_pct);
        $("volume-value").textContent = `${r.volume_pct} %`;
      }
    }
  }

  function renderPause() {
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

  const deviceChips = new Map();

  function renderDevices() {
    const list = $("devices");
    const lost = state.alarms.get("device_lost");
    const names = [...state.devices.keys()];
    if (lost && lost.device && !names.includes(lost.device)) names.push(lost.device);
    names.sort();
    for (const [name, li] of deviceChips) {
      if (!names.includes(name)) {
        li.remove();
        deviceChips.delete(name);
      }
    }
    names.forEach((name, i) => {
      let li = deviceChips.get(name);
      if (!li) {
        li = document.createElement("li");
        li.dataset.device = name;
        deviceChips.set(name, li);
      }
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
      const d = state.devices.get(name) || { connected: true, detail: "" };
      const alarmed = Boolean(lost && lost.device === name);
      let kind = d.connected && !alarmed ? "up" : "down";
      let text = name;
      if (!state.live) {
        // The page is not live: it does not know whether the device is.
        kind = "unknown";
        text = `${name}: not live`;
      } else if (!d.connected) {
        text = `${name} lost${d.detail ? `: ${d.detail}` : ""}`;
      } else if (alarmed) {
        text = `${name} lost: no data`;
      }
      setAttr(li, "class", kind);
      setAttr(li, "title", kind === "up" ? `${name} connected` : text);
      setText(li, text);
    });
  }

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

  function renderAlarms() {
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

  function windowsFor(route) {
    return (state.timeline && state.timeline[route]) || DEFAULT_WINDOWS;
  }

  function renderSession() {
    const s = state.session;
    const phaseEl = $("phase");
    const phase = state.phase || (s ? "baseline" : null);
    phaseEl.textContent = phase || "no session";
    phaseEl.dataset.phase = phase || "none";
    $("session-route").textContent = s ? s.route.toUpperCase() : "\u2014";
    const ended = state.phase === "ended";
    // An ended session's clocks stop where it ended.
    const now = ended && s && s.ended_t != null ? s.ended_t : state.now;
    setText($("since-start"), s && now !== null ? clock(now - s.started_t) : "\u2014");
    const dosed = s && s.dose_t !== null && s.dose_t !== undefined;
    setText($("since-dose"), dosed && now !== null ? clock(now - s.dose_t) : "\u2014");

    const w = windowsFor(s ? s.route : "iv");
    const onsetShare = (100 * w.onset_min) / w.effect_end_min;
    $("window-onset").style.width = `${onsetShare}%`;
    $("window-onset-label").textContent = `onset 0\u2013${w.onset_min} min`;
    $("window-effect-label").textContent = `effect ${w.onset_min}\u2013${w.effect_end_min} min`;
    const marker = $("window-marker");
    const box = $("window-bar").parentElement;
    let text = s ? "awaiting dose" : "no session";
    if (ended) {
      text = "session ended";
      marker.hidden = true;
    } else if (dosed && now !== null) {
      const min = (now - s.dose_t) / 60;
      marker.hidden = false;
      marker.style.left = `${Math.min(100, Math.max(0, (100 * min) / w.effect_end_min))}%`;
      if (min < w.onset_min) text = `onset window \u00b7 ${Math.ceil(w.onset_min - min)} min to effect`;
      else if (min < w.effect_end_min) text = `effect window \u00b7 ${Math.ceil(w.effect_end_min - min)} min left`;
      else text = `effect window ended ${Math.floor(min - w.effect_end_min)} min ago`;
    } else {
      marker.hidden = true;
    }
    box.classList.toggle("pending", ended || !(dosed && now !== null));
    setText($("window-text"), text);
  }

  function renderControls() {
    const signedIn = state.user !== null && state.user !== undefined;
    // Signed out the page is only the sign-in form: nothing of the room shows.
    $("signin").hidden = state.user !== null;
    $("room-view").hidden = !signedIn;
    $("signed-in").hidden = !signedIn;
    $("connection").hidden = !signedIn; // signed out there is no link to speak of
    $("devices").hidden = !signedIn;
    $("signed-in-user").textContent = signedIn ? state.user : "";
    $("controls").hidden = !signedIn;
    const s = state.session;
    const canDose = s && (s.dose_t === null || s.dose_t === undefined) && state.phase !== "ended";
    $("mark-dose").disabled = state.busy || !canDose;
    $("end-session").disabled = state.busy || !s || state.phase === "ended";
    // One session at a time: Start comes back once this one has ended.
    $("start-session").disabled = state.busy || Boolean(s && state.phase !== "ended");
    $("dose-gate-note").hidden = !(canDose && (doseGateHigh() || predoseMissing().length > 0));
    setText($("dose-gate-note"), doseGateHigh()
      ? "Dose gate high: marking the dose asks for an override reason."
      : "Pre-dose checklist not complete: marking the dose asks for an override reason.");
    for (const id of ["entry-bp", "entry-effect", "entry-dose"]) {
      for (const el of $(id).elements) el.disabled = state.busy || !signedIn || !s || state.phase === "ended";
    }
    const off = state.busy || !signedIn;
    $("measure-nibp").disabled = off;
    const noteable = s && state.phase !== "ended";
    $("note-text").disabled = !signedIn || !noteable;
    $("add-note").disabled = off || !noteable || $("note-text").value.trim() === "";
    for (const id of ["scene-select", "scene-pin", "set-scene", "volume", "volume-pin", "set-volume"]) {
      $(id).disabled = off;
    }
  }

  // ---- checklists, entries and the BP plan -------------------------------------------------

  function checklistBoxes(kind) {
    const box = $(`${kind}-items`);
    const items = state.checklistItems[kind] || [];
    const key = items.map((i) => i.id).join("|");
    if (box.dataset.items !== key) {
      // Built once per list of items: ticking a box is never undone by a redraw.
      box.dataset.items = key;
      box.querySelectorAll("label").forEach((el) => el.remove());
      for (const item of items) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = item.id;
        input.dataset.testid = `${kind}-${item.id}`;
        input.addEventListener("change", () => {
          checklistEdits[kind] = [...box.querySelectorAll("input:checked")].map((i) => i.value);
          renderChecklists();
        });
        label.append(input, ` ${item.text}`);
        box.append(label);
      }
    }
    const confirmed = state.checklists[kind];
    const ticked = checklistEdits[kind] ?? (confirmed ? confirmed.checked : []);
    for (const input of box.querySelectorAll("input")) {
      input.checked = ticked.includes(input.value);
      input.disabled = state.busy || !state.user;
    }
    return { items, ticked, confirmed };
  }

  function itemText(kind, id) {
    const item = (state.checklistItems[kind] || []).find((i) => i.id === id);
    return item ? item.text : id;
  }

  function predoseMissing() {
    const items = state.checklistItems.predose || [];
    const done = state.checklists.predose;
    if (!state.predoseGate || !items.length) return [];
    return done ? done.missing : items.map((i) => i.id);
  }

  function renderChecklists() {
    const s = state.session;
    const running = Boolean(s && state.phase !== "ended");
    const dosed = Boolean(s && s.dose_t != null);
    $("predose-panel").hidden = !(running && !dosed && (state.checklistItems.predose || []).length);
    const pre = checklistBoxes("predose");
    $("predose-confirm").disabled = state.busy || !state.user || !running || dosed;
    let text = "Not confirmed yet";
    if (pre.confirmed) {
      const missing = pre.confirmed.missing.map((id) => itemText("predose", id));
      text = `Confirmed by ${pre.confirmed.user} at ${stampText(pre.confirmed.t)}` +
        (missing.length ? ` \u00b7 not done: ${missing.join(", ")}` : " \u00b7 complete");
    }
    if (state.predoseGate && predoseMissing().length) text += " \u00b7 the dose needs it, or an override with a reason";
    setText($("predose-state"), text);
    $("predose-state").dataset.complete = String(Boolean(pre.confirmed && !pre.confirmed.missing.length));

    $("discharge-checklist").hidden = !(running && dosed && (state.checklistItems.discharge || []).length);
    const dis = checklistBoxes("discharge");
    const all = dis.items.every((i) => dis.ticked.includes(i.id));
    $("discharge-signoff").disabled = state.busy || !state.user || !all;
    setText($("discharge-signed"), dis.confirmed
      ? `Signed off by ${dis.confirmed.user} at ${stampText(dis.confirmed.t)}`
      : "Tick every item, then sign off (it goes into the record with your name).");
  }

  let entriesWanted = 0;

  // The session's notes and entries, read back from the record (not kept by the page).
  async function fetchEntries() {
    if (!state.user) return;
    const ask = ++entriesWanted;
    try {
      const res = await fetch("/api/session/entries", { credentials: "same-origin" });
      if (!res.ok || ask !== entriesWanted) return;
      state.entries = (await res.json()).entries || [];
    } catch {
      return;
    }
    renderEntries();
  }

  function entryText(e) {
    switch (e.action) {
      case "note":
        return `Note: ${e.text}`;
      case "entry":
        if (e.kind === "bp") return `BP by hand ${e.sys}/${e.dia}${e.pr ? ` \u00b7 PR ${e.pr}` : ""}`;
        if (e.kind === "side_effect") return `Side effect: ${e.effect} (${e.severity})${e.text ? ` \u2014 ${e.text}` : ""}`;
        if (e.kind === "dose") return `Dose given: ${e.drug || "ketamine"} ${e.amount_mg} mg ${String(e.route).toUpperCase()}${e.text ? ` \u2014 ${e.text}` : ""}`;
        return `Entry: ${e.kind}`;
      case "checklist": {
        const what = e.kind === "predose" ? "Pre-dose checklist confirmed" : "Discharge signed off";
        const missing = (e.missing || []).map((id) => itemText(e.kind, id));
        return `${what}${missing.length ? ` (not done: ${missing.join(", ")})` : ""}${e.override_reason ? ` \u2014 reason: ${e.override_reason}` : ""}`;
      }
      case "dose":
        return `Dose marked${e.override_reason ? ` over ${e.checklist_missing ? "the checklist" : "the dose gate"}: ${e.override_reason}` : ""}`;
      case "session_start":
        return `Session started (${String(e.route || "").toUpperCase()})`;
      case "session_end":
        return "Session ended";
      default:
        return e.action;
    }
  }

  function renderEntries() {
    const list = $("entries");
    const key = state.entries.map((e) => `${e.t}${e.action}`).join("|");
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(...[...state.entries].reverse().map((e) => {
      const li = document.createElement("li");
      li.dataset.action = e.action;
      const stamp = document.createElement("time");
      stamp.textContent = stampText(e.t);
      const text = document.createElement("span");
      text.textContent = entryText(e);
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = e.user;
      li.append(stamp, text, who);
      return li;
    }));
  }

  // The BP readings still to come in this phase: the interval programme and forced readings.
  function bpPlan() {
    const sched = state.nibpSchedule;
    const s = state.session;
    const now = state.now;
    if (!sched || !s || !state.phase || state.phase === "ended" || now === null) return [];
    const next = nextBpDue(state.nibpRequest, state.bp && state.bp.sys !== undefined ? state.bp.t : null);
    if (next === null) return [];
    const interval = (sched.interval_min[state.phase] || 0) * 60;
    const w = windowsFor(s.route);
    const dosed = s.dose_t != null;
    let end = Infinity;
    if (dosed && state.phase === "onset") end = s.dose_t + w.onset_min * 60;
    if (dosed && state.phase === "effect") end = s.dose_t + w.effect_end_min * 60;
    const forced = dosed ? (sched.forced_after_dose_min || []).map((m) => s.dose_t + m * 60) : [];
    const plan = [];
    let t = next;
    while (plan.length < PLAN_MAX && t < end && interval > 0) {
      const hit = forced.find((f) => Math.abs(f - t) < 1);
      plan.push({ t, why: hit !== undefined ? "forced" : state.phase });
      const f = forced.find((x) => x > t + 1 && x < t + interval);
      t = f !== undefined ? f : t + interval;
    }
    if (end !== Infinity && plan.length < PLAN_MAX) plan.push({ t: end, why: "phase ends" });
    return plan;
  }

  function renderBpPlan() {
    const list = $("bp-plan");
    const plan = bpPlan();
    const texts = plan.map((p) => {
      const since = state.session && state.session.dose_t != null ? `dose + ${Math.round((p.t - state.session.dose_t) / 60)} min` : stampText(p.t);
      const when = p.t <= state.now ? "due now" : `in ${clock(p.t - state.now)}`;
      return p.why === "phase ends" ? `${state.phase} ends ${when} (${since})` : `${when} \u00b7 ${since}${p.why === "forced" ? " (forced)" : ""}`;
    });
    while (list.children.length > texts.length) list.lastElementChild.remove();
    texts.forEach((text, i) => {
      let li = list.children[i];
      if (!li) {
        li = document.createElement("li");
        list.append(li);
      }
      setText(li, text);
    });
  }

  function doseGateHigh() {
    const gate = state.alarms.get("dose_gate");
    return Boolean(gate && gate.priority === "high");
  }

  function render() {
    if (state.room) {
      $("room").textContent = state.room;
      document.title = `${state.room} \u00b7 sessiond`;
    }
    renderVital("spo2");
    renderVital("pr");
    renderBp();
    renderDevices();
    renderPause();
    renderAlarms();
    renderSound();
    renderLog();
    renderSession();
    renderBaseline();
    renderDischarge();
    renderNotes();
    renderChecklists();
    renderEntries();
    renderBpPlan();
    renderTrends();
    renderRoom();
    renderControls();
    renderInfusion();
  }

  // ---- alarm sound (IEC 60601-1-8 bursts, one stream, the highest priority wins) -----------

  // Pulse start offsets (s) of one burst, the pulse length (s), the pitch (Hz) and the time
  // from one burst's start to the next (s). HIGH: 10 pulses, 3+2, a pause, 3+2; MEDIUM: 3;
  // LOW: 2 (clinical.md §1.2, §4.5). Pulses 150-200 ms, within IEC's 75-250 ms.
  const BURSTS = {
    high: { offsets: [0, 0.25, 0.5, 1.0, 1.25, 2.25, 2.5, 2.75, 3.25, 3.5], pulse: 0.15, pitch: 523.25, every: 6 },
    medium: { offsets: [0, 0.3, 0.6], pulse: 0.2, pitch: 440, every: 8 },
    low: { offsets: [0, 0.3], pulse: 0.2, pitch: 392, every: 20 },
  };
  // The pitch with four harmonics (IEC Table 4: a fundamental and >= 4 harmonics).
  const HARMONICS = [0, 1, 0.6, 0.45, 0.35, 0.25];

  const sound = {
    ctx: null,
    wave: null,
    unavailable: false,
    playing: null, // { priority, oscillators, ends, reminder }
    nextAt: 0, // performance.now() ms of the next burst of `playing.priority`
    acked: new Map(), // alarm id -> performance.now() ms of the last ack or reminder
  };

  function audioContext() {
    if (sound.ctx || sound.unavailable) return sound.ctx;
    try {
      sound.ctx = new AudioContext();
      sound.ctx.addEventListener("statechange", () => renderSound());
      const real = Float32Array.from(HARMONICS, () => 0);
      sound.wave = sound.ctx.createPeriodicWave(real, Float32Array.from(HARMONICS));
    } catch {
      sound.unavailable = true;
    }
    return sound.ctx;
  }

  // Browsers start audio only after a user gesture: any click or key press unlocks it.
  function unlockSound() {
    const ctx = audioContext();
    if (ctx && ctx.state !== "running") ctx.resume().then(renderSound, renderSound);
  }

  const soundBlocked = () => !sound.ctx || sound.ctx.state !== "running";

  // The priority that sounds now, or null: the highest of the alarms shown and not
  // acknowledged, unless audio is paused.
  function soundingPriority() {
    if (audioPaused()) return null;
    let best = null;
    for (const a of state.alarms.values()) {
      if (!a.acknowledged && (RANK[a.priority] || 0) > (RANK[best] || 0)) best = a.priority;
    }
    return best;
  }

  function audioPaused() {
    const p = state.pause;
    return Boolean(p && p.paused && (p.until_t === null || state.now === null || p.until_t > state.now));
  }

  // An acknowledged alarm whose condition stays sounds one burst again every reminder_s.
  function reminderDue(nowMs) {
    const every = ((state.alarmAudio && state.alarmAudio.reminder_s) || 150) * 1000;
    let best = null;
    for (const a of state.alarms.values()) {
      if (!a.acknowledged) continue;
      if (!sound.acked.has(a.id)) sound.acked.set(a.id, nowMs);
      if (a.state === "active" && nowMs - sound.acked.get(a.id) >= every) {
        if (!best || RANK[a.priority] > RANK[best.priority]) best = a;
      }
    }
    for (const id of sound.acked.keys()) {
      const a = state.alarms.get(id);
      if (!a || !a.acknowledged) sound.acked.delete(id);
    }
    return best;
  }

  function stopBurst() {
    const p = sound.playing;
    if (!p) return;
    for (const osc of p.oscillators) {
      try {
        osc.stop();
      } catch {
        // already stopped
      }
    }
    sound.playing = null;
  }

  function startBurst(priority, reminder) {
    const ctx = sound.ctx;
    const b = BURSTS[priority];
    const t0 = ctx.currentTime + 0.02;
    const oscillators = [];
    for (const offset of b.offsets) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.setPeriodicWave(sound.wave);
      osc.frequency.value = b.pitch;
      const start = t0 + offset;
      const end = start + b.pulse;
      // 10 ms ramps: a pulse, not a click.
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(0.5, start + 0.01);
      gain.gain.setValueAtTime(0.5, end - 0.01);
      gain.gain.linearRampToValueAtTime(0, end);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(end);
      oscillators.push(osc);
    }
    const length = b.offsets[b.offsets.length - 1] + b.pulse;
    sound.playing = { priority, oscillators, endsAt: performance.now() + (length + 0.05) * 1000, reminder };
    sound.nextAt = performance.now() + b.every * 1000;
  }

  // Runs every 100 ms: one stream, re-decided between (and during) bursts.
  function soundTick() {
    if (!state.user || soundBlocked()) {
      stopBurst();
      return;
    }
    const nowMs = performance.now();
    const want = soundingPriority();
    const p = sound.playing;
    const busy = p && nowMs < p.endsAt;
    if (want === null) {
      // Silenced only by acknowledge or pause (or the alarms going): stop at once.
      if (p && !p.reminder) stopBurst();
      const due = !busy && reminderDue(nowMs);
      if (due && !audioPaused()) {
        sound.acked.set(due.id, nowMs);
        startBurst(due.priority, true);
      }
      return;
    }
    if (p && (p.reminder || p.priority !== want)) {
      // A higher priority interrupts; a burst whose alarms were acknowledged (or went)
      // stops at once and the next priority down takes the stream.
      stopBurst();
      startBurst(want, false);
      return;
    }
    if (!busy && (!p || nowMs >= sound.nextAt)) startBurst(want, false);
  }

  function renderSound() {
    const el = $("sound-state");
    let kind = "on";
    let text = "Alarm sound on";
    if (sound.unavailable) {
      kind = "blocked";
      text = "No alarm sound: this browser cannot play audio";
    } else if (soundBlocked()) {
      kind = "blocked";
      text = "Alarm sound is blocked by the browser: click anywhere or press Enable alarm sound";
    } else if (audioPaused()) {
      kind = "paused";
      text = "Alarm sound paused";
    }
    el.dataset.sound = kind;
    setText(el, text);
    $("sound-enable").hidden = !(kind === "blocked" && !sound.unavailable);
  }

  // ---- trends and pleth (uPlot, vendored) -----------------------------------------------------

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
    if (charts.vitals || typeof uPlot === "undefined" || $("room-view").hidden) return;
    const axis = { stroke: "#98a2ae", grid: { stroke: "#2a3340" }, ticks: { stroke: "#2a3340" } };
    const base = (id, height) => ({
      width: chartWidth(id), height,
      scales: { x: { time: false } },
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      hooks: { draw: [decorations] },
    });
    charts.vitals = new uPlot({
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
    charts.bp = new uPlot({
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
  async function fetchTrend() {
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
  function trendReading(r) {
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

  function trendAlarm(a, before) {
    if (a.state === "active" && (!before || RANK[a.priority] > RANK[before.priority])) {
      trend.marks.push({ t: a.t, kind: "alarm", colour: PRIORITY_COLOUR[a.priority] || "#fff", label: a.id });
    }
  }

  let trendDrawn = 0;

  function renderTrends() {
    // Redrawn at most once a second: a chart of a whole session needs no more.
    const now = performance.now();
    if (now - trendDrawn < 1000) return;
    trendDrawn = now;
    drawTrend();
  }

  function takePleth(msg) {
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
    if (!charts.pleth && typeof uPlot !== "undefined") {
      charts.pleth = new uPlot({
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

  // ---- commands ----------------------------------------------------------------------------

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  async function post(path, body) {
    let res;
    try {
      res = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body || {}),
        credentials: "same-origin",
      });
    } catch {
      return { ok: false, status: 0, data: { error: "console server unreachable" } };
    }
    let data = {};
    try {
      data = await res.json();
    } catch {
      // not JSON (a proxy error page): the status says enough
    }
    return { ok: res.ok, status: res.status, data };
  }

  async function command(path, body) {
    state.busy = true;
    render();
    try {
      const res = await post(path, body);
      if (res.ok) {
        clearError();
        if (/^\/api\/(notes|entries|checklists|session\/)/.test(path)) fetchEntries();
        return res.data;
      }
      if (res.status === 401) {
        signedOut("Your sign-in has ended: please sign in again.");
      } else {
        showError(res.data.error || `request failed (HTTP ${res.status})`);
      }
      return null;
    } finally {
      state.busy = false;
      render();
    }
  }

  function showLoginError(message) {
    const el = $("login-error");
    el.textContent = message;
    el.hidden = !message;
  }

  async function signIn(event) {
    event.preventDefault();
    const user = $("login-user").value.trim();
    const password = $("login-password").value;
    $("login-button").disabled = true;
    try {
      const res = await post("/api/login", { user, password });
      $("login-password").value = "";
      if (res.ok) {
        state.user = res.data.user;
        unlockSound(); // the sign-in click is the gesture the browser wants for audio
        showLoginError("");
        clearError();
        connect();
      } else if (res.status === 401) {
        showLoginError("Wrong user name or password.");
      } else if (res.status === 429) {
        // Locked after too many failures: the server says for how long.
        showLoginError(`${res.data.error || "Too many failed sign-ins"}.`);
      } else {
        showLoginError(res.data.error || `Sign-in failed (HTTP ${res.status}).`);
      }
    } finally {
      $("login-button").disabled = false;
      render();
    }
  }

  // The sign-in ended (signed out here, expired, or refused): forget the room and the link.
  function signedOut(message) {
    state.user = null;
    disconnect();
    resetRoom();
    clearError();
    showLoginError(message || "");
    render();
  }

  async function signOut() {
    await post("/api/logout", {});
    signedOut("");
  }

  async function whoAmI() {
    let user = null;
    try {
      const res = await fetch("/api/me", { credentials: "same-origin" });
      if (res.ok) user = (await res.json()).user;
    } catch {
      user = state.user ?? null; // the daemon is unreachable: keep what we knew
    }
    return user;
  }

  function openDoseDialog() {
    const gate = state.alarms.get("dose_gate");
    const value = gate && gate.value !== undefined ? ` (SYS ${number(gate.value)} mmHg, limit ${number(gate.limit)})` : "";
    const why = [];
    if (doseGateHigh()) why.push(`The blood pressure before the dose is at or above the dose-gate limit${value}.`);
    const missing = predoseMissing().map((id) => itemText("predose", id));
    if (missing.length) why.push(`The pre-dose checklist is not complete: ${missing.join(", ")}.`);
    $("dose-dialog-title").textContent = doseGateHigh() ? "Dose gate is high" : "Pre-dose checklist not complete";
    $("dose-dialog-text").textContent =
      `${why.join(" ")} Marking the dose now needs an override with a reason (it goes into the session record).`;
    $("dose-reason").value = "";
    $("dose-confirm").disabled = true;
    $("dose-dialog").showModal();
    $("dose-reason").focus();
  }

  // ---- infusion (DESIGN §4) ----------------------------------------------------------------
  // Its start is the dose; pauses, resumes and the stop are nurse actions with a reason and an
  // amount. The prompt on a confirmed critical BP is advice: nothing here talks to a pump.

  // The session's infusion as the status snapshot shows it, then folded from live actions.
  let infusion = null;
  // What the dialog does when confirmed: "start", "pause", "resume" or "stop".
  let infusionMode = null;
  const INFUSION_PHASES = new Set(["onset", "effect", "recovery"]);

  function takeInfusion(msg) {
    switch (msg.type) {
      case "status":
        infusion = msg.infusion ? { ...msg.infusion, pauses: (msg.infusion.pauses || []).map((p) => ({ ...p })) } : null;
        break;
      case "session": // a new session is a new patient; a resumed one brings its infusion
        infusion = msg.infusion ? { ...msg.infusion, pauses: (msg.infusion.pauses || []).map((p) => ({ ...p })), prompt: null } : null;
        break;
      case "infusion_prompt":
        if (infusion) infusion.prompt = msg.active ? msg : null;
        break;
      case "action":
        foldInfusionAction(msg);
        break;
      default:
    }
  }

  function foldInfusionAction(msg) {
    if (msg.action === "infusion_start") {
      infusion = {
        started_t: msg.t, planned_amount: msg.planned_amount ?? null, unit: msg.unit ?? null,
        planned_min: msg.planned_min ?? null, state: "running", pauses: [], stopped_t: null,
        given_amount: null, given_unit: null, prompt: null,
      };
      return;
    }
    if (!infusion || infusion.state === "stopped") return;
    const open = infusion.pauses.length ? infusion.pauses[infusion.pauses.length - 1] : null;
    if (msg.action === "infusion_pause") {
      infusion.pauses.push({ t: msg.t, until_t: null });
      infusion.state = "paused";
    } else if (msg.action === "infusion_resume") {
      if (open && open.until_t === null) open.until_t = msg.t;
      infusion.state = "running";
    } else if (msg.action === "infusion_stop") {
      if (open && open.until_t === null) open.until_t = msg.t;
      infusion.state = "stopped";
      infusion.stopped_t = msg.t;
      infusion.given_amount = msg.given_amount ?? null;
      infusion.given_unit = msg.unit ?? infusion.unit;
      infusion.prompt = null;
    }
  }

  // While an infusion runs (paused or not) after the dose, the BP interval is its own.
  function infusionIntervalMin() {
    const sched = state.nibpSchedule;
    if (!infusion || infusion.state === "stopped" || !INFUSION_PHASES.has(state.phase)) return null;
    return sched && sched.infusion_interval_min !== undefined ? sched.infusion_interval_min : null;
  }

  // Seconds it ran (pauses excluded) and spent paused, up to now or its stop.
  function infusionTimes(inf) {
    const now = state.now === null ? inf.started_t : state.now;
    const end = inf.stopped_t === null ? now : inf.stopped_t;
    let paused = 0;
    for (const p of inf.pauses) paused += Math.max(0, Math.min(end, p.until_t === null ? now : p.until_t) - p.t);
    const elapsed = Math.max(0, end - inf.started_t);
    return { elapsed, paused, infused: Math.max(0, elapsed - paused) };
  }

  const dose = (value, unit) => (value === null || value === undefined ? "\u2014" : `${number(value)} ${unit || ""}`.trim());

  function renderInfusion() {
    const s = state.session;
    const inf = infusion;
    $("infusion-panel").hidden = !s && !inf;
    const el = $("infusion-state");
    let progress = 0;
    if (!inf) {
      el.dataset.state = "none";
      el.textContent = s && s.dose_t == null && state.phase !== "ended" ? "not started \u00b7 its start is the dose" : "no infusion";
      $("infusion-plan").textContent = "\u2014";
      $("infusion-pauses").textContent = "\u2014";
      $("infusion-given").textContent = "\u2014";
    } else {
      const t = infusionTimes(inf);
      const plan = inf.planned_min ? ` of ${clock(inf.planned_min * 60)} planned` : "";
      el.dataset.state = inf.state;
      if (inf.state === "stopped") el.textContent = `stopped \u00b7 ran ${clock(t.infused)}${plan}`;
      else if (inf.state === "paused") {
        const since = inf.pauses[inf.pauses.length - 1].t;
        el.textContent = `paused for ${clock((state.now ?? since) - since)} \u00b7 ran ${clock(t.infused)}${plan}`;
      } else el.textContent = `running \u00b7 ${clock(t.infused)}${plan}`;
      if (inf.planned_min) progress = Math.min(100, (100 * t.infused) / (inf.planned_min * 60));
      $("infusion-plan").textContent =
        inf.planned_min ? `${dose(inf.planned_amount, inf.unit)} over ${number(inf.planned_min)} min` : dose(inf.planned_amount, inf.unit);
      const n = inf.pauses.length;
      $("infusion-pauses").textContent = n === 0 ? "none" : `${n} \u00b7 ${clock(t.paused)} in all`;
      $("infusion-given").textContent = inf.state === "stopped" ? dose(inf.given_amount, inf.given_unit || inf.unit) : "\u2014";
    }
    $("infusion-progress-fill").style.width = `${progress}%`;
    $("infusion-progress").setAttribute("aria-valuenow", String(Math.round(progress)));
    const prompt = inf && inf.prompt;
    $("infusion-prompt").hidden = !prompt;
    document.body.classList.toggle("infusion-prompted", Boolean(prompt));
    if (prompt) {
      $("infusion-prompt-readings").textContent =
        `BP ${prompt.readings.map((r) => `${number(r.sys)}/${number(r.dia)} mmHg (${ago(r.t)})`).join(", ")}`;
    }
    renderInfusionControls(s, inf);
    renderInfusionShade(s, inf);
  }

  function renderInfusionControls(s, inf) {
    const live = Boolean(s) && state.phase !== "ended";
    $("infusion-controls").hidden = state.user === null || !live;
    const st = inf ? inf.state : null;
    const show = { start: !inf && s && s.dose_t == null, pause: st === "running", resume: st === "paused", stop: st === "running" || st === "paused" };
    for (const [mode, shown] of Object.entries(show)) {
      $(`infusion-${mode}`).hidden = !shown;
      $(`infusion-${mode}`).disabled = state.busy;
    }
  }

  // The running spans on the session's window bar (the time chart of onset and effect).
  function renderInfusionShade(s, inf) {
    const shade = $("window-infusion");
    shade.replaceChildren();
    if (!inf || !s || s.dose_t == null || state.now === null) return;
    const span = windowsFor(s.route).effect_end_min * 60;
    const end = inf.stopped_t === null ? state.now : inf.stopped_t;
    const runs = [];
    let from = inf.started_t;
    for (const p of inf.pauses) {
      runs.push([from, p.t]);
      from = p.until_t === null ? end : p.until_t;
    }
    runs.push([from, end]);
    for (const [a, b] of runs) {
      const left = Math.min(100, Math.max(0, (100 * (a - s.dose_t)) / span));
      const right = Math.min(100, Math.max(0, (100 * (b - s.dose_t)) / span));
      if (right <= left) continue;
      const run = document.createElement("div");
      run.className = "run";
      run.style.left = `${left}%`;
      run.style.width = `${right - left}%`;
      shade.append(run);
    }
    shade.title = "infusion running";
  }

  const INFUSION_DIALOG = {
    start: ["Start infusion", "Start", "Its start is the dose: the onset begins now."],
    pause: ["Pause the infusion", "Pause", "Say why; it goes into the session record."],
    resume: ["Resume the infusion", "Resume", "Say why; it goes into the session record."],
    stop: ["Stop the infusion", "Stop", "The amount given, as the pump shows it."],
  };

  function openInfusionDialog(mode) {
    infusionMode = mode;
    const [title, confirm, text] = INFUSION_DIALOG[mode];
    const gate = mode === "start" && doseGateHigh();
    $("infusion-dialog-title").textContent = title;
    $("infusion-confirm").textContent = confirm;
    $("infusion-dialog-text").textContent = gate
      ? `${text} The dose gate is high: starting needs an override reason (it goes into the session record).`
      : text;
    $("infusion-amount-row").hidden = mode !== "start" && mode !== "stop";
    $("infusion-amount-label").textContent = mode === "stop" ? "Amount given" : "Planned amount";
    $("infusion-amount").value = "";
    if (mode === "stop" && infusion && infusion.unit) $("infusion-unit").value = infusion.unit;
    $("infusion-minutes-row").hidden = mode !== "start";
    const reason = mode === "pause" || mode === "resume" || mode === "stop" || gate;
    $("infusion-reason").hidden = !reason;
    $("infusion-reason-label").hidden = !reason;
    $("infusion-reason-label").textContent =
      mode === "stop" ? "Note (optional)" : gate ? "Reason for the dose-gate override" : "Reason";
    $("infusion-reason").value = "";
    checkInfusionForm();
    $("infusion-dialog").showModal();
    (mode === "pause" || mode === "resume" ? $("infusion-reason") : $("infusion-amount")).focus();
  }

  // The command's body from the dialog, or null while it is not complete.
  function infusionBody() {
    const mode = infusionMode;
    const reason = $("infusion-reason").value.trim();
    const amount = $("infusion-amount").value.trim() === "" ? NaN : Number($("infusion-amount").value);
    const unit = $("infusion-unit").value;
    if (mode === "pause" || mode === "resume") return reason ? { reason } : null;
    if (mode === "stop") {
      if (!Number.isFinite(amount) || amount < 0) return null;
      return reason ? { amount, unit, reason } : { amount, unit };
    }
    const minutes = Number($("infusion-minutes").value);
    if (!Number.isFinite(amount) || amount <= 0 || !Number.isFinite(minutes) || minutes <= 0 || minutes > 240) return null;
    const body = { amount, unit, planned_min: minutes };
    if (doseGateHigh()) {
      if (!reason) return null;
      body.reason = reason;
    }
    return body;
  }

  function checkInfusionForm() {
    $("infusion-confirm").disabled = infusionBody() === null;
  }

  function bindInfusion() {
    for (const mode of ["start", "pause", "resume", "stop"]) {
      $(`infusion-${mode}`).addEventListener("click", () => openInfusionDialog(mode));
    }
    for (const id of ["infusion-amount", "infusion-unit", "infusion-minutes", "infusion-reason"]) {
      $(id).addEventListener("input", checkInfusionForm);
    }
    $("infusion-cancel").addEventListener("click", () => $("infusion-dialog").close());
    $("infusion-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = infusionBody();
      if (body === null) return;
      $("infusion-dialog").close();
      await command(`/api/infusion/${infusionMode}`, body);
    });
  }

  // ---- live link ---------------------------------------------------------------------------

  let socket = null;
  let reconnectTimer = null;
  let backoff = BACKOFF_MIN_MS;
  let lastMessageAt = 0;
  let wasLive = false;

  function setConnection(kind, text) {
    const el = $("connection");
    el.dataset.state = kind;
    el.textContent = text;
    document.body.classList.toggle("offline", kind !== "live");
    state.live = kind === "live";
    if (kind === "live") wasLive = true;
    scheduleRender();
    // Until the first connection there is nothing on the page that could be mistaken as live.
    $("offline-banner").hidden = kind === "live" || !wasLive;
  }

  function disconnect() {
    const ws = socket;
    socket = null;
    clearTimeout(reconnectTimer);
    if (ws) ws.close();
    wasLive = false;
    setConnection("connecting", "Connecting\u2026");
  }

  function connect() {
    if (socket) return;
    clearTimeout(reconnectTimer);
    setConnection("connecting", "Connecting\u2026");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    socket = ws;
    lastMessageAt = Date.now();
    ws.onmessage = (event) => {
      if (socket !== ws) return;
      lastMessageAt = Date.now();
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "status") {
        backoff = BACKOFF_MIN_MS;
        setConnection("live", "Live");
      }
      handle(msg);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      if (event.code === WS_SIGNED_OUT) {
        signedOut("Your sign-in has ended: please sign in again.");
        return;
      }
      reconnectLater();
    };
  }

  function reconnectLater() {
    socket = null;
    // Jittered exponential backoff: many consoles must not hammer a restarting daemon at once.
    const delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    setConnection("lost", "Connection lost \u2014 values are not live");
    reconnectTimer = setTimeout(retry, delay);
    scheduleRender();
  }

  // A refused handshake looks like any closed socket: ask whether we are still signed in.
  async function retry() {
    if (state.user === null) return;
    const user = await whoAmI();
    if (user === null) {
      signedOut("Your sign-in has ended: please sign in again.");
    } else if (state.user !== null) {
      connect();
    }
  }

  // A link that stays open but goes quiet is as dead as a closed one.
  setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessageAt > SILENCE_MS) {
      const ws = socket;
      reconnectLater();
      ws.close();
    }
  }, 1000);

  document.addEventListener("DOMContentLoaded", () => {
    for (const kind of ["pointerdown", "keydown"]) {
      document.addEventListener(kind, unlockSound, { capture: true });
    }
    $("sound-enable").addEventListener("click", unlockSound);
    setInterval(soundTick, 100);
    $("login-form").addEventListener("submit", signIn);
    $("logout-button").addEventListener("click", signOut);
    $("start-session").addEventListener("click", async () => {
      await command("/api/session/start", { route: $("route").value });
    });
    $("predose-confirm").addEventListener("click", async () => {
      const checked = checklistEdits.predose ?? (state.checklists.predose ? state.checklists.predose.checked : []);
      if ((await command("/api/checklists", { kind: "predose", checked })) !== null) checklistEdits.predose = null;
    });
    $("discharge-signoff").addEventListener("click", async () => {
      const checked = checklistEdits.discharge || [];
      if ((await command("/api/checklists", { kind: "discharge", checked })) !== null) checklistEdits.discharge = null;
    });
    const entry = (form, build) => $(form).addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = build();
      if ((await command("/api/entries", { entry: body })) !== null) $(form).reset();
    });
    const int = (id) => (($(id).value || "") === "" ? undefined : Number.parseInt($(id).value, 10));
    entry("entry-bp", () => ({ kind: "bp", sys: int("bp-sys"), dia: int("bp-dia"), pr: int("bp-pr") }));
    entry("entry-effect", () => ({
      kind: "side_effect", effect: $("effect").value, severity: $("severity").value, text: $("effect-text").value,
    }));
    entry("entry-dose", () => ({
      kind: "dose", route: $("dose-route").value, amount_mg: Number.parseFloat($("dose-mg").value),
      drug: $("dose-drug").value.trim() || "ketamine",
    }));
    $("mark-dose").addEventListener("click", async () => {
      if (doseGateHigh() || predoseMissing().length) {
        openDoseDialog();
        return;
      }
      await command("/api/session/dose", {});
    });
    $("dose-reason").addEventListener("input", () => {
      $("dose-confirm").disabled = $("dose-reason").value.trim() === "";
    });
    $("dose-cancel").addEventListener("click", () => $("dose-dialog").close());
    $("dose-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const reason = $("dose-reason").value.trim();
      if (!reason) return;
      $("dose-dialog").close();
      await command("/api/session/dose", { reason });
    });
    $("pause-audio").addEventListener("click", async () => {
      await command("/api/alarms/pause", {});
    });
    $("measure-nibp").addEventListener("click", async () => {
      await command("/api/nibp/measure", {});
    });
    $("note-text").addEventListener("input", () => renderControls());
    $("add-note").addEventListener("click", async () => {
      const text = $("note-text").value.trim();
      if (!text) return;
      if ((await command("/api/notes", { text })) !== null) $("note-text").value = "";
      render();
    });
    $("set-scene").addEventListener("click", async () => {
      const scene = $("scene-select").value || null;
      await command("/api/room/scene", { scene, pinned: $("scene-pin").checked });
    });
    $("volume").addEventListener("input", () => {
      editing.volume = true;
      $("volume-value").textContent = `${$("volume").value} %`;
    });
    $("set-volume").addEventListener("click", async () => {
      const volume = Number.parseInt($("volume").value, 10);
      await command("/api/room/volume", { volume, pinned: $("volume-pin").checked });
      editing.volume = false;
      render();
    });
    bindInfusion();
    $("end-session").addEventListener("click", async () => {
      // Ending stops the timeline and the BP schedule: ask, as a monitor does for discharge.
      if (window.confirm("End this session?")) await command("/api/session/end", {});
    });
    render();
    whoAmI().then((user) => {
      state.user = user;
      if (user !== null) {
        audioContext(); // may start suspended until a gesture: the page then says so
        connect();
      }
      render();
    });
  });
})();
