// Commands over the JSON API: the page shows itself busy while one runs, and says plainly
// why one failed. A sign-in that has ended (HTTP 401) ends it on the page too.

import { $ } from "./common.js";
import { render, signedOut, state } from "./state.js";

export function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

export async function post(path, body) {
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

// Runs a command as the signed-in nurse; its answer's data, or null (the error is shown).
// `readBack` runs once it succeeded (a command that wrote the record reads its row back).
export async function command(path, body, readBack = null) {
  state.busy = true;
  render();
  try {
    const res = await post(path, body);
    if (res.ok) {
      clearError();
      if (readBack) readBack();
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
