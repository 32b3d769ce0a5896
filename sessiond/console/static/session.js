// The session: its phase and clocks, the onset and effect windows, the baseline, the
// commands (start, mark the dose through the dose gate and the pre-dose checklist, end),
// the checklists and discharge readiness. The infusion is infusion.js.

import { $, clock, label, number, setText } from "./common.js";
import { record } from "./entries.js";
import { doseGateHigh, itemText, stampText, state, windowsFor } from "./state.js";

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

// Boxes a nurse is ticking: kept until confirmed, not overwritten by live updates.
const checklistEdits = { predose: null, discharge: null };

// A confirmed checklist (a `checklist` action) replaces what was being ticked.
export function takeChecklist(msg) {
  state.checklists = { ...state.checklists, [msg.kind]: {
    t: msg.t, user: msg.user, checked: msg.checked || [], missing: msg.missing || [],
    override: Boolean(msg.override),
  } };
  checklistEdits[msg.kind] = null;
}

// A new session is a new patient: nothing ticked for the last one stays.
export function clearChecklistEdits() {
  checklistEdits.predose = checklistEdits.discharge = null;
}

export function renderSession() {
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

export function renderBaseline() {
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

export function renderDischarge() {
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

// ---- checklists ----------------------------------------------------------------------------

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

function predoseMissing() {
  const items = state.checklistItems.predose || [];
  const done = state.checklists.predose;
  if (!state.predoseGate || !items.length) return [];
  return done ? done.missing : items.map((i) => i.id);
}

export function renderChecklists() {
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

// ---- the commands --------------------------------------------------------------------------

export function renderSessionControls() {
  const signedIn = state.user !== null && state.user !== undefined;
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

export function bindSession() {
  $("start-session").addEventListener("click", async () => {
    await record("/api/session/start", { route: $("route").value });
  });
  $("predose-confirm").addEventListener("click", async () => {
    const checked = checklistEdits.predose ?? (state.checklists.predose ? state.checklists.predose.checked : []);
    if ((await record("/api/checklists", { kind: "predose", checked })) !== null) checklistEdits.predose = null;
  });
  $("discharge-signoff").addEventListener("click", async () => {
    const checked = checklistEdits.discharge || [];
    if ((await record("/api/checklists", { kind: "discharge", checked })) !== null) checklistEdits.discharge = null;
  });
  $("mark-dose").addEventListener("click", async () => {
    if (doseGateHigh() || predoseMissing().length) {
      openDoseDialog();
      return;
    }
    await record("/api/session/dose", {});
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
    await record("/api/session/dose", { reason });
  });
  $("end-session").addEventListener("click", async () => {
    // Ending stops the timeline and the BP schedule: ask, as a monitor does for discharge.
    if (window.confirm("End this session?")) await record("/api/session/end", {});
  });
}
