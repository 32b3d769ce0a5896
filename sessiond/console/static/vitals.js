// The numerics: SpO2 and pulse from the oximeter, the last blood pressure with the NIBP
// schedule (last request, next one, the plan of this phase, measure now), and the device
// chips in the header.

import { $, clock, label, number, setAttr, setText } from "./common.js";
import { command } from "./api.js";
import { infusionIntervalMin } from "./infusion.js";
import { ago, stampText, state, windowsFor } from "./state.js";

// Session seconds without an oximeter reading before its numbers stop looking current.
const STALE_S = 10;
// A BP request unanswered this long (session seconds) no longer shows as measuring.
const MEASURING_S = 180;
// Readings of the BP schedule listed ahead at most.
const PLAN_MAX = 6;

export const isBp = (r) => "sys" in r || "dia" in r || "map" in r;

// A reading from a BP device is its last BP; any other device's is the oximeter's.
export function takeReading(r) {
  if (isBp(r)) {
    state.bpDevices.add(r.device);
    state.bp = r;
  } else if (!state.bpDevices.has(r.device)) {
    state.oximeter = r;
  }
}

// A current, valid oximeter value as text, or null.
export function oximeterValue(key) {
  const r = state.oximeter;
  if (!r || r[key] === undefined || r[key] === null || (r.flags || []).length) return null;
  if (state.now !== null && state.now - r.t > STALE_S) return null;
  return number(r[key]);
}

export function bpText() {
  const r = state.bp;
  return r && r.sys !== undefined && r.dia !== undefined ? `${number(r.sys)}/${number(r.dia)}` : null;
}

const show = (v) => (v === undefined || v === null ? "---" : number(v));

export function renderVital(key) {
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

// ---- blood pressure and its schedule -------------------------------------------------------

export function renderBp() {
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

export function renderBpPlan() {
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

export function renderVitalsControls() {
  const signedIn = state.user !== null && state.user !== undefined;
  $("measure-nibp").disabled = state.busy || !signedIn;
}

export function bindVitals() {
  $("measure-nibp").addEventListener("click", async () => {
    await command("/api/nibp/measure", {});
  });
}

// ---- device chips ------------------------------------------------------------------------

const deviceChips = new Map();

export function renderDevices() {
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
