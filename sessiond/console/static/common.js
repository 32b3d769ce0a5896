// Helpers of both pages, the room console (main.js and its modules) and the clinic overview
// (overview.js): finding and writing elements, alarm priorities and their marks, formatting.
// Pure functions only: importing this module changes nothing on a page.

export const $ = (id) => document.getElementById(id);

// Writes that change nothing are skipped: the DOM (and its animations) stay as they are.
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

export const RANK = { high: 3, medium: 2, low: 1 };
// Technical alarms report the equipment: `!` prefixes instead of `*` (clinical.md §4.5).
export const TECHNICAL = new Set([
  "sensor_off", "signal_poor", "device_lost", "nibp_error", "nibp_overdue",
  "console_unwatched", "monitor_fault", "record_fault",
]);

// An alarm's priority marks: `***` high, `**` medium, `*` low (`!` for a technical alarm).
export function alarmMarks(id, priority) {
  return (TECHNICAL.has(id) ? "!" : "*").repeat(RANK[priority] || 1);
}

export const label = (flag) => flag.replace(/_/g, " ");

// Seconds as m:ss, or h:mm:ss from an hour on.
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

export const number = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
