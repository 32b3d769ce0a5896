// sessiond nurse console: live room view over a WebSocket, commands over the JSON API.
// Plain browser JavaScript in native modules, no build step and no external resources (the
// clinic may be offline). This module boots the page: sign-in, the live link, and the draw
// of every panel; each panel is its own module:
//   state.js     the room as the page knows it, the page's draw and sign-out hooks
//   common.js    helpers shared with the clinic overview (overview.js)
//   api.js       commands over the JSON API
//   dispatch.js  folding server messages into the state
//   alarms.js    the alarm list, acknowledge, numerics coloured by alarm, audio pause
//   sound.js     alarm sound in the page (IEC 60601-1-8 bursts)
//   vitals.js    SpO2, pulse, BP and its schedule, device chips
//   trends.js    trends and pleth (uPlot)
//   session.js   phase, windows, baseline, dose gate, checklists, discharge readiness
//   infusion.js  the IV infusion
//   entries.js   notes and manual entries, read back from the record
//   room.js      the room's scene and music
//   log.js       the event log

import { $ } from "./common.js";
import { bindAlarms, clearAnnouncer, renderAlarms, renderPause } from "./alarms.js";
import { clearError, post } from "./api.js";
import { handle } from "./dispatch.js";
import { bindEntries, renderEntries, renderEntryControls, renderNotes } from "./entries.js";
import { bindInfusion, renderInfusion } from "./infusion.js";
import { clearLog, renderLog } from "./log.js";
import { bindRoom, renderRoom, renderRoomControls } from "./room.js";
import {
  bindSession,
  renderBaseline,
  renderChecklists,
  renderDischarge,
  renderSession,
  renderSessionControls,
} from "./session.js";
import { audioContext, renderSound, startSound, unlockSound } from "./sound.js";
import { resetRoomState, scheduleRender, state, wire } from "./state.js";
import { renderTrends } from "./trends.js";
import {
  bindVitals,
  renderBp,
  renderBpPlan,
  renderDevices,
  renderVital,
  renderVitalsControls,
} from "./vitals.js";

// Ticks come every second: this long without any message means the link is dead.
const SILENCE_MS = 5000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
// The server closes a live socket with this code when its sign-in ends.
const WS_SIGNED_OUT = 4401;

// ---- drawing the page ----------------------------------------------------------------------

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

function renderControls() {
  const signedIn = state.user !== null && state.user !== undefined;
  // Signed out the page is only the sign-in form: nothing of the room shows.
  $("signin").hidden = state.user !== null;
  $("room-view").hidden = !signedIn;
  $("signed-in").hidden = !signedIn;
  $("connection").hidden = !signedIn; // signed out there is no link to speak of
  $("devices").hidden = !signedIn;
  $("signed-in-user").textContent = signedIn ? state.user : "";
  renderSessionControls();
  renderEntryControls();
  renderVitalsControls();
  renderRoomControls();
}

// ---- sign-in -------------------------------------------------------------------------------

// Forget everything of the room (signed out: nothing may stay on screen).
function resetRoom() {
  resetRoomState();
  clearLog();
  clearAnnouncer();
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

// ---- the live link ------------------------------------------------------------------------

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
  // `WebSocket` is looked up on the window at each connect (a test may wrap it).
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

wire({ render, signedOut });

document.addEventListener("DOMContentLoaded", () => {
  startSound();
  $("login-form").addEventListener("submit", signIn);
  $("logout-button").addEventListener("click", signOut);
  bindSession();
  bindEntries();
  bindAlarms();
  bindVitals();
  bindRoom();
  bindInfusion();
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
