// The room as this page knows it: one state object, folded from the server's messages
// (dispatch.js) and read by every panel, and the queries more than one panel asks of it.
// The draw of the whole page and the end of a sign-in belong to main.js, which imports every
// panel; the panels reach them through `render` and `signedOut` here, wired by main.js at
// boot, so no module imports one that imports it.

import { clock } from "./common.js";

export const state = {
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

// Forget everything of the room (signed out: nothing may stay on screen).
export function resetRoomState() {
  Object.assign(state, {
    checklists: {}, entries: [],
    room: null, now: null, session: null, phase: null, oximeter: null, bp: null,
    alarms: new Map(), devices: new Map(), pause: null, baseline: null, discharge: null,
    nibpRequest: null, nibpFailure: null, roomSetting: null, notes: { count: 0, last_t: null },
    log: [],
  });
}

// ---- the page's draw and sign-out, wired by main.js ---------------------------------------

const page = { render: () => {}, signedOut: () => {} };

export function wire({ render: draw, signedOut: end }) {
  page.render = draw;
  page.signedOut = end;
}

// Draw every panel now (a command's busy state must show at once).
export function render() {
  page.render();
}

// The sign-in ended (signed out here, expired, or refused): forget the room and the link.
export function signedOut(message) {
  page.signedOut(message);
}

let renderPending = false;
export function scheduleRender() {
  // Readings can arrive at 75 Hz (and 60x that in simulation): draw once per frame.
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    render();
  });
}

// ---- what more than one panel asks of the state --------------------------------------------

const DEFAULT_WINDOWS = { onset_min: 30, effect_end_min: 150 };

export function windowsFor(route) {
  return (state.timeline && state.timeline[route]) || DEFAULT_WINDOWS;
}

export const ago = (t) => (state.now === null ? "" : `${clock(state.now - t)} ago`);

// Log times on the session's own clock: T+ since the session started.
export function stampText(t) {
  const s = state.session;
  if (s && t >= s.started_t) return `T+${clock(t - s.started_t)}`;
  return state.now === null ? "" : `${clock(state.now - t)} before`;
}

export function doseGateHigh() {
  const gate = state.alarms.get("dose_gate");
  return Boolean(gate && gate.priority === "high");
}

export function itemText(kind, id) {
  const item = (state.checklistItems[kind] || []).find((i) => i.id === id);
  return item ? item.text : id;
}
