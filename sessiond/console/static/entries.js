// Notes and manual entries (BP by hand, a side effect, a dose given): the forms, and the
// session's entries read back from the record, which the page never keeps itself. Every
// command that writes the record goes through `record` so that its row is read back.

import { $ } from "./common.js";
import { command } from "./api.js";
import { ago, itemText, render, stampText, state } from "./state.js";

// Nurse actions the record reads back in "Notes and entries".
const ENTRY_ACTIONS = new Set(["note", "entry", "checklist", "dose", "session_start", "session_end"]);
// A nurse action's row is read back from the record this long after its event.
const ENTRY_READ_DELAY_MS = 400;

let entriesWanted = 0;

// The session's notes and entries, read back from the record (not kept by the page).
export async function fetchEntries() {
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

// A nurse action's event may come before its row is committed: read back a moment later (and
// again when our own command answers, which the daemon does once it is on disk).
export function readBackLater(action) {
  if (ENTRY_ACTIONS.has(action)) setTimeout(fetchEntries, ENTRY_READ_DELAY_MS);
}

// A command that writes the session record (a note, an entry, a checklist, the session's
// start, dose or end); its answer's data or null, as `command`.
export function record(path, body) {
  return command(path, body, fetchEntries);
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

export function renderEntries() {
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

export function renderNotes() {
  const n = state.notes;
  $("notes-info").textContent =
    n.count === 0 ? "no notes" : `${n.count} note${n.count === 1 ? "" : "s"} \u00b7 last ${n.last_t === null ? "" : ago(n.last_t)}`;
}

export function renderEntryControls() {
  const signedIn = state.user !== null && state.user !== undefined;
  const s = state.session;
  for (const id of ["entry-bp", "entry-effect", "entry-dose"]) {
    for (const el of $(id).elements) el.disabled = state.busy || !signedIn || !s || state.phase === "ended";
  }
  const off = state.busy || !signedIn;
  const noteable = s && state.phase !== "ended";
  $("note-text").disabled = !signedIn || !noteable;
  $("add-note").disabled = off || !noteable || $("note-text").value.trim() === "";
}

export function bindEntries() {
  const entry = (form, build) => $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = build();
    if ((await record("/api/entries", { entry: body })) !== null) $(form).reset();
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
  $("note-text").addEventListener("input", () => renderEntryControls());
  $("add-note").addEventListener("click", async () => {
    const text = $("note-text").value.trim();
    if (!text) return;
    if ((await record("/api/notes", { text })) !== null) $("note-text").value = "";
    render();
  });
}
