// The room's lights and music: the scene and volume the room reports (and whether an alarm
// or a nurse overrides the phase's), and a nurse's scene or volume, pinned or until the next
// phase.

import { $, number } from "./common.js";
import { command } from "./api.js";
import { render, state } from "./state.js";

// The volume a nurse is setting is not overwritten by live updates until sent.
const editing = { volume: false };

export function renderRoom() {
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

export function renderRoomControls() {
  const signedIn = state.user !== null && state.user !== undefined;
  const off = state.busy || !signedIn;
  for (const id of ["scene-select", "scene-pin", "set-scene", "volume", "volume-pin", "set-volume"]) {
    $(id).disabled = off;
  }
}

export function bindRoom() {
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
}
