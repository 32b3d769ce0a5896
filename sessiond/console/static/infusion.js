// The IV infusion (DESIGN §4): its start is the dose; pauses, resumes and the stop are nurse
// actions with a reason and an amount. The prompt on a confirmed critical BP is advice:
// nothing here talks to a pump.

import { $, clock, number } from "./common.js";
import { command } from "./api.js";
import { ago, doseGateHigh, state, windowsFor } from "./state.js";

// The session's infusion as the status snapshot shows it, then folded from live actions.
let infusion = null;
// What the dialog does when confirmed: "start", "pause", "resume" or "stop".
let infusionMode = null;
const INFUSION_PHASES = new Set(["onset", "effect", "recovery"]);

// Every message passes here first: the infusion folds its own from status, session and actions.
export function takeInfusion(msg) {
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
export function infusionIntervalMin() {
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

export function renderInfusion() {
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

export function bindInfusion() {
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
