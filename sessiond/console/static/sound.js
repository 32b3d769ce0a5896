// Alarm sound in the page (IEC 60601-1-8 bursts): one stream, the highest priority that is
// shown and not acknowledged wins; an acknowledged alarm that stays reminds every
// reminder_s; audio pause silences it all. The browser may block audio until a gesture:
// the page then says so plainly.

import { $, RANK, setText } from "./common.js";
import { state } from "./state.js";

// Pulse start offsets (s) of one burst, the pulse length (s), the pitch (Hz) and the time
// from one burst's start to the next (s). HIGH: 10 pulses, 3+2, a pause, 3+2; MEDIUM: 3;
// LOW: 2 (clinical.md §1.2, §4.5). Pulses 150-200 ms, within IEC's 75-250 ms.
const BURSTS = {
  high: { offsets: [0, 0.25, 0.5, 1.0, 1.25, 2.25, 2.5, 2.75, 3.25, 3.5], pulse: 0.15, pitch: 523.25, every: 6 },
  medium: { offsets: [0, 0.3, 0.6], pulse: 0.2, pitch: 440, every: 8 },
  low: { offsets: [0, 0.3], pulse: 0.2, pitch: 392, every: 20 },
};
// The pitch with four harmonics (IEC Table 4: a fundamental and >= 4 harmonics).
const HARMONICS = [0, 1, 0.6, 0.45, 0.35, 0.25];

const sound = {
  ctx: null,
  wave: null,
  unavailable: false,
  playing: null, // { priority, oscillators, ends, reminder }
  nextAt: 0, // performance.now() ms of the next burst of `playing.priority`
  acked: new Map(), // alarm id -> performance.now() ms of the last ack or reminder
};

// The page's one audio context, made at the first need (`AudioContext` is looked up on the
// window then, as a test's init script may have replaced it).
export function audioContext() {
  if (sound.ctx || sound.unavailable) return sound.ctx;
  try {
    sound.ctx = new AudioContext();
    sound.ctx.addEventListener("statechange", () => renderSound());
    const real = Float32Array.from(HARMONICS, () => 0);
    sound.wave = sound.ctx.createPeriodicWave(real, Float32Array.from(HARMONICS));
  } catch {
    sound.unavailable = true;
  }
  return sound.ctx;
}

// Browsers start audio only after a user gesture: any click or key press unlocks it.
export function unlockSound() {
  const ctx = audioContext();
  if (ctx && ctx.state !== "running") ctx.resume().then(renderSound, renderSound);
}

const soundBlocked = () => !sound.ctx || sound.ctx.state !== "running";

// The priority that sounds now, or null: the highest of the alarms shown and not
// acknowledged, unless audio is paused.
function soundingPriority() {
  if (audioPaused()) return null;
  let best = null;
  for (const a of state.alarms.values()) {
    if (!a.acknowledged && (RANK[a.priority] || 0) > (RANK[best] || 0)) best = a.priority;
  }
  return best;
}

function audioPaused() {
  const p = state.pause;
  return Boolean(p && p.paused && (p.until_t === null || state.now === null || p.until_t > state.now));
}

// An acknowledged alarm whose condition stays sounds one burst again every reminder_s.
function reminderDue(nowMs) {
  const every = ((state.alarmAudio && state.alarmAudio.reminder_s) || 150) * 1000;
  let best = null;
  for (const a of state.alarms.values()) {
    if (!a.acknowledged) continue;
    if (!sound.acked.has(a.id)) sound.acked.set(a.id, nowMs);
    if (a.state === "active" && nowMs - sound.acked.get(a.id) >= every) {
      if (!best || RANK[a.priority] > RANK[best.priority]) best = a;
    }
  }
  for (const id of sound.acked.keys()) {
    const a = state.alarms.get(id);
    if (!a || !a.acknowledged) sound.acked.delete(id);
  }
  return best;
}

function stopBurst() {
  const p = sound.playing;
  if (!p) return;
  for (const osc of p.oscillators) {
    try {
      osc.stop();
    } catch {
      // already stopped
    }
  }
  sound.playing = null;
}

function startBurst(priority, reminder) {
  const ctx = sound.ctx;
  const b = BURSTS[priority];
  const t0 = ctx.currentTime + 0.02;
  const oscillators = [];
  for (const offset of b.offsets) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.setPeriodicWave(sound.wave);
    osc.frequency.value = b.pitch;
    const start = t0 + offset;
    const end = start + b.pulse;
    // 10 ms ramps: a pulse, not a click.
    gain.gain.setValueAtTime(0, start);
    gain.gain.linearRampToValueAtTime(0.5, start + 0.01);
    gain.gain.setValueAtTime(0.5, end - 0.01);
    gain.gain.linearRampToValueAtTime(0, end);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start);
    osc.stop(end);
    oscillators.push(osc);
  }
  const length = b.offsets[b.offsets.length - 1] + b.pulse;
  sound.playing = { priority, oscillators, endsAt: performance.now() + (length + 0.05) * 1000, reminder };
  sound.nextAt = performance.now() + b.every * 1000;
}

// Runs every 100 ms: one stream, re-decided between (and during) bursts.
function soundTick() {
  if (!state.user || soundBlocked()) {
    stopBurst();
    return;
  }
  const nowMs = performance.now();
  const want = soundingPriority();
  const p = sound.playing;
  const busy = p && nowMs < p.endsAt;
  if (want === null) {
    // Silenced only by acknowledge or pause (or the alarms going): stop at once.
    if (p && !p.reminder) stopBurst();
    const due = !busy && reminderDue(nowMs);
    if (due && !audioPaused()) {
      sound.acked.set(due.id, nowMs);
      startBurst(due.priority, true);
    }
    return;
  }
  if (p && (p.reminder || p.priority !== want)) {
    // A higher priority interrupts; a burst whose alarms were acknowledged (or went)
    // stops at once and the next priority down takes the stream.
    stopBurst();
    startBurst(want, false);
    return;
  }
  if (!busy && (!p || nowMs >= sound.nextAt)) startBurst(want, false);
}

export function renderSound() {
  const el = $("sound-state");
  let kind = "on";
  let text = "Alarm sound on";
  if (sound.unavailable) {
    kind = "blocked";
    text = "No alarm sound: this browser cannot play audio";
  } else if (soundBlocked()) {
    kind = "blocked";
    text = "Alarm sound is blocked by the browser: click anywhere or press Enable alarm sound";
  } else if (audioPaused()) {
    kind = "paused";
    text = "Alarm sound paused";
  }
  el.dataset.sound = kind;
  setText(el, text);
  $("sound-enable").hidden = !(kind === "blocked" && !sound.unavailable);
}

// Any click or key press unlocks audio; the stream is decided again every 100 ms.
export function startSound() {
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, unlockSound, { capture: true });
  }
  $("sound-enable").addEventListener("click", unlockSound);
  setInterval(soundTick, 100);
}
