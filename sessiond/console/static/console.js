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
    record_fault: ["Record cannot be written", ""],
    monitor_fault: ["Monitor fault", ""],
  };
  // Technical alarms report the equipment: `!` prefixes instead of `*` (clinical.md §4.5).
  const TECHNICAL = new Set([
    "sensor_off", "signal_poor", "device_lost", "nibp_error", "nibp_overdue", "record_fault",
    "monitor_fault",
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
  // Which vital tile an alarm belongs to, so the tile's border shows it too.
  const ALARM_TILE = {
    spo2_low: "spo2-tile", sensor_off: "spo2-tile", signal_poor: "spo2-tile",
    pr_high: "pr-tile", pr_low: "pr-tile",
  };
  const DEFAULT_WINDOWS = { onset_min: 30, effect_end_min: 150 };
  // A BP request unanswered this long (session seconds) no longer shows as measuring.
  const MEASURING_S = 180;
  // Session seconds without an oximeter reading before its numbers stop looking current.
  const STALE_S = 10;
  // Ticks come every second: this long without any message means the link is dead.
  const SILENCE_MS = 5000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;

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
    user: null,
    busy: false,
  };
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
    state.oximeter = null;
    state.bp = null;
    const readings = Object.values(msg.readings || {}).sort((a, b) => a.t - b.t);
    readings.filter(isBp).forEach((r) => state.bpDevices.add(r.device));
    readings.forEach(takeReading);
    state.alarms = new Map((msg.alarms || []).map((a) => [a.id, a]));
    state.devices = new Map(Object.entries(msg.devices || {}));
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
        break;
      case "alarm": {
        const before = state.alarms.get(msg.id);
        // An acknowledgement holds for one occurrence at its priority (as RoomStatus does).
        const keep = before && msg.state !== "cleared" && RANK[msg.priority] <= RANK[before.priority];
        if (msg.state === "cleared") state.alarms.delete(msg.id);
        else state.alarms.set(msg.id, { ...msg, acknowledged: Boolean(keep && before.acknowledged) });
        break;
      }
      case "phase":
        state.phase = msg.phase;
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
        break;
      case "action":
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
      case "device":
        state.devices.set(msg.device, { connected: msg.connected, detail: msg.detail });
        break;
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
    el.textContent = missing ? "---" : number(value);
    el.classList.toggle("missing", missing);
    el.classList.toggle("flagged", flags.length > 0);
    el.classList.toggle("stale", stale);
    let note = flags.map(label).join(" \u00b7 ");
    if (stale) note = "no recent data";
    else if (r === null) note = "no data";
    $(`${key}-flags`).textContent = note;
  }

  const ago = (t) => (state.now === null ? "" : `${clock(state.now - t)} ago`);
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

  function renderDischarge() {
    const d = state.discharge;
    const s = state.session;
    const el = $("discharge");
    const list = $("discharge-unmet");
    list.replaceChildren();
    let ready = "none";
    let text = "no session";
    if (d) {
      ready = d.ready ? "ready" : "not-ready";
      text = d.ready ? "Ready for discharge" : "Not ready";
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
    el.textContent = text;
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
    btn.disabled = state.busy || state.user === null || paused;
  }

  function renderDevices() {
    const list = $("devices");
    list.replaceChildren();
    for (const [name, d] of [...state.devices.entries()].sort()) {
      const li = document.createElement("li");
      li.className = d.connected ? "up" : "down";
      li.dataset.device = name;
      li.textContent = d.connected ? name : `${name} lost${d.detail ? `: ${d.detail}` : ""}`;
      li.title = d.detail || "";
      list.append(li);
    }
  }

  function renderAlarms() {
    const list = $("alarms");
    list.replaceChildren();
    const alarms = [...state.alarms.values()].sort(
      (a, b) => (RANK[b.priority] || 0) - (RANK[a.priority] || 0) || a.t - b.t,
    );
    const tiles = {};
    for (const a of alarms) {
      const [name, unit] = ALARMS[a.id] || [a.id.replace(/_/g, " "), ""];
      const li = document.createElement("li");
      li.className = `alarm ${a.priority}${a.state === "latched" ? " latched" : ""}${a.acknowledged ? " acked" : ""}`;
      li.dataset.alarmId = a.id;
      li.dataset.priority = a.priority;
      li.dataset.state = a.state;
      const prio = document.createElement("span");
      prio.className = "prio";
      const marks = (TECHNICAL.has(a.id) ? "!" : "*").repeat(RANK[a.priority] || 1);
      prio.textContent = `${marks} ${a.priority.toUpperCase()}`;
      const what = document.createElement("span");
      what.className = "name";
      // A technical alarm names its device: "Device lost: nibp".
      what.textContent = a.device ? `${name}: ${a.device}` : name;
      const detail = document.createElement("span");
      detail.className = "detail";
      const u = unit ? ` ${unit}` : "";
      const bits = [];
      if (a.value !== undefined) bits.push(`${number(a.value)}${u}`);
      if (a.limit !== undefined) bits.push(`(limit ${number(a.limit)}${u})`);
      detail.textContent = bits.join(" ");
      const st = document.createElement("span");
      st.className = "state";
      st.textContent = [a.state === "latched" ? "latched (condition gone)" : "", a.acknowledged ? "acknowledged" : ""]
        .filter(Boolean)
        .join(" \u00b7 ");
      li.append(prio, what, detail, st);
      if (state.user !== null && !a.acknowledged) {
        const ack = document.createElement("button");
        ack.type = "button";
        ack.className = "ack";
        ack.textContent = "Acknowledge";
        ack.dataset.testid = `ack-${a.id}`;
        ack.disabled = state.busy;
        ack.addEventListener("click", () => command("/api/alarms/ack", { id: a.id }));
        li.append(ack);
      }
      list.append(li);
      const tile = ALARM_TILE[a.id];
      if (tile && (RANK[a.priority] || 0) > (RANK[tiles[tile]] || 0)) tiles[tile] = a.priority;
    }
    $("no-alarms").hidden = alarms.length > 0;
    for (const tile of ["spo2-tile", "pr-tile"]) {
      for (const p of ["high", "medium", "low"]) {
        $(tile).classList.toggle(`alarm-${p}`, tiles[tile] === p);
      }
    }
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
    const now = state.now;
    $("since-start").textContent = s && now !== null ? clock(now - s.started_t) : "\u2014";
    const dosed = s && s.dose_t !== null && s.dose_t !== undefined;
    $("since-dose").textContent = dosed && now !== null ? clock(now - s.dose_t) : "\u2014";

    const w = windowsFor(s ? s.route : "iv");
    const onsetShare = (100 * w.onset_min) / w.effect_end_min;
    $("window-onset").style.width = `${onsetShare}%`;
    $("window-onset-label").textContent = `onset 0\u2013${w.onset_min} min`;
    $("window-effect-label").textContent = `effect ${w.onset_min}\u2013${w.effect_end_min} min`;
    const marker = $("window-marker");
    const box = $("window-bar").parentElement;
    let text = s ? "awaiting dose" : "no session";
    if (dosed && now !== null) {
      const min = (now - s.dose_t) / 60;
      marker.hidden = false;
      marker.style.left = `${Math.min(100, Math.max(0, (100 * min) / w.effect_end_min))}%`;
      if (min < w.onset_min) text = `onset window \u00b7 ${Math.ceil(w.onset_min - min)} min to effect`;
      else if (min < w.effect_end_min) text = `effect window \u00b7 ${Math.ceil(w.effect_end_min - min)} min left`;
      else text = `effect window ended ${Math.floor(min - w.effect_end_min)} min ago`;
    } else {
      marker.hidden = true;
    }
    box.classList.toggle("pending", !(dosed && now !== null));
    $("window-text").textContent = text;
  }

  function renderControls() {
    const signedIn = state.user !== null;
    $("login-form").hidden = signedIn;
    $("signed-in").hidden = !signedIn;
    $("signed-in-user").textContent = signedIn ? state.user : "";
    $("controls").hidden = !signedIn;
    const s = state.session;
    const canDose = s && (s.dose_t === null || s.dose_t === undefined) && state.phase !== "ended";
    $("mark-dose").disabled = state.busy || !canDose;
    $("end-session").disabled = state.busy || !s || state.phase === "ended";
    $("start-session").disabled = state.busy;
    $("dose-gate-note").hidden = !(canDose && doseGateHigh());
    const off = state.busy || !signedIn;
    $("measure-nibp").disabled = off;
    const noteable = s && state.phase !== "ended";
    $("note-text").disabled = !signedIn || !noteable;
    $("add-note").disabled = off || !noteable || $("note-text").value.trim() === "";
    for (const id of ["scene-select", "scene-pin", "set-scene", "volume", "volume-pin", "set-volume"]) {
      $(id).disabled = off;
    }
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
    renderSession();
    renderBaseline();
    renderDischarge();
    renderNotes();
    renderRoom();
    renderControls();
    renderInfusion();
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
        return res.data;
      }
      if (res.status === 401) {
        state.user = null;
        showError("Signed out: please sign in again.");
      } else {
        showError(res.data.error || `request failed (HTTP ${res.status})`);
      }
      return null;
    } finally {
      state.busy = false;
      render();
    }
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
        clearError();
      } else {
        showError(res.status === 401 ? "Wrong user name or password." : res.data.error || "sign-in failed");
      }
    } finally {
      $("login-button").disabled = false;
      render();
    }
  }

  async function signOut() {
    await post("/api/logout", {});
    state.user = null;
    clearError();
    render();
  }

  async function whoAmI() {
    try {
      const res = await fetch("/api/me", { credentials: "same-origin" });
      state.user = res.ok ? (await res.json()).user : null;
    } catch {
      state.user = null;
    }
    render();
  }

  function openDoseDialog() {
    const gate = state.alarms.get("dose_gate");
    const value = gate && gate.value !== undefined ? ` (SYS ${number(gate.value)} mmHg, limit ${number(gate.limit)})` : "";
    $("dose-dialog-text").textContent =
      `The blood pressure before the dose is at or above the dose-gate limit${value}. ` +
      "Marking the dose now needs an override with a reason (it goes into the session record).";
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
  let backoff = BACKOFF_MIN_MS;
  let lastMessageAt = 0;
  let wasLive = false;

  function setConnection(kind, text) {
    const el = $("connection");
    el.dataset.state = kind;
    el.textContent = text;
    document.body.classList.toggle("offline", kind !== "live");
    if (kind === "live") wasLive = true;
    // Until the first connection there is nothing on the page that could be mistaken as live.
    $("offline-banner").hidden = kind === "live" || !wasLive;
  }

  function connect() {
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
    ws.onclose = () => {
      if (socket === ws) reconnectLater();
    };
  }

  function reconnectLater() {
    socket = null;
    // Jittered exponential backoff: many consoles must not hammer a restarting daemon at once.
    const delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    setConnection("lost", "Connection lost \u2014 values are not live");
    setTimeout(connect, delay);
    scheduleRender();
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
    $("login-form").addEventListener("submit", signIn);
    $("logout-button").addEventListener("click", signOut);
    $("start-session").addEventListener("click", async () => {
      await command("/api/session/start", { route: $("route").value });
    });
    $("mark-dose").addEventListener("click", async () => {
      if (doseGateHigh()) {
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
    whoAmI();
    connect();
  });
})();
