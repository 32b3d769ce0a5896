"""How fast the nonin-df7 decoder runs: prints figures, asserts nothing but equal output.

    .venv/bin/python bench/nonin_speed.py [--hours 3] [--chunk 4096]

Builds a synthetic DF7 stream (75 frames/s: HR crossing 128, no-value stretches, beats with
green and red perfusion, artifact, out-of-track and sensor-off spells), then times the
bulk decoder against a plain reference decoder (one frame at a time in a Python loop, the
way most open-source Nonin readers do it) on the same chunks, each stamped with the time
its last byte was sent, and checks that both give the same readings (on change and once a
second, DESIGN §6) and the same pleth waveform.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sessiond.devices.decoder import EMIT_EVERY_S
from sessiond.devices.nonin import NoninDf7Decoder
from sessiond.model import Quality, Reading

FRAME_HZ = 75


class ReferenceDf7:
    """A plain per-frame decoder with the same output: a bytearray, a list of frames."""

    def __init__(self, *, device: str) -> None:
        self.device = device
        self.buf = bytearray()
        self.frames: list[tuple[int, int, int]] | None = None
        self.perfusion = 0
        self.last: tuple[int | None, int | None, Quality] | None = None
        self.next_emit = -1e300
        self.pleth: list[int] = []

    def waveform(self) -> tuple[int, ...]:
        return tuple(self.pleth)

    def feed(self, data: bytes, t: float) -> list[Reading]:
        buf = self.buf
        buf += data
        self.pleth = []
        out: list[Reading] = []
        i, n = 0, len(buf)
        while n - i >= 5:
            s, pm, pl, v, c = buf[i], buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]
            if not s & 0x80 or (s + pm + pl + v) & 0xFF != c:
                self.frames = None  # a lost frame breaks the packet: hunt for the next SYNC
                i += 1
                continue
            i += 5
            if s & 0x01:
                self.frames = []
            elif self.frames is None:
                continue
            self.frames.append((s, (pm << 8) | pl, v))
            if len(self.frames) == 25:
                values = self.packet(self.frames)
                if values is not None:
                    self.pleth += [p for _, p, _ in self.frames]
                    # A Reading on a change, or a second after the last one.
                    if values != self.last or t >= self.next_emit:
                        spo2, pr, flags = values
                        out.append(Reading(t=t, device=self.device, spo2=spo2, pr=pr, flags=flags))
                        self.last, self.next_emit = values, t + EMIT_EVERY_S - 1e-6
                self.frames = None
        del buf[:i]
        return out

    def packet(
        self, frames: list[tuple[int, int, int]]
    ) -> tuple[int | None, int | None, Quality] | None:
        bits = beat = 0
        for s, _, _ in frames:
            bits |= s
            if s & 0x06:
                beat = (s >> 1) & 0x03
        if bits & 0x58:
            self.perfusion = 0
        elif beat:
            self.perfusion = beat
        flags = Quality.NONE
        if bits & 0x40:
            flags |= Quality.SENSOR_OFF
        if bits & 0x20:
            flags |= Quality.ARTIFACT
        if bits & 0x10:
            flags |= Quality.SEARCHING
        if bits & 0x08:
            flags |= Quality.NO_SENSOR
        if self.perfusion == 2:  # red
            flags |= Quality.LOW_PERFUSION
        spo2: int | None
        pr: int | None
        if bits & 0x48:
            spo2 = pr = None
        else:
            hr = ((frames[0][2] & 0x03) << 7) | (frames[1][2] & 0x7F)
            spo2 = frames[2][2]
            if (spo2 > 100 and spo2 != 127) or 321 < hr < 511:
                return None
            spo2 = None if spo2 == 127 else spo2
            pr = None if hr == 511 else hr
        return spo2, pr, flags


def df7_stream(hours: float) -> tuple[bytes, int]:
    """A synthetic session: `hours` of DF7 frames, 25 to a packet."""
    packets = int(hours * 3600 * FRAME_HZ) // 25
    n = packets * 25
    t = np.arange(n) / FRAME_HZ
    k = np.arange(packets)
    hr = (60 + 80 * (0.5 + 0.5 * np.sin(2 * np.pi * k / 5400))).astype(np.int64)
    spo2 = (94 + 5 * np.sin(2 * np.pi * k / 3000)).astype(np.int64)
    gone = (k % 1000) < 10  # a finger out every ~5.5 min: no-value codes and SNSA
    hr[gone], spo2[gone] = 511, 127
    table = np.zeros((packets, 25), dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2], table[:, 3] = (hr >> 7) & 3, hr & 0x7F, spo2, 48
    table[:, 8], table[:, 19], table[:, 20] = spo2, (hr >> 7) & 3, hr & 0x7F
    status = np.full(n, 0x80, dtype=np.int64)
    status[::25] |= 0x01
    frame_packet = np.repeat(k, 25)
    beat_phase = (t * np.repeat(hr.clip(30, 300), 25) / 60) % 1.0
    on_beat = beat_phase < 12 / FRAME_HZ
    beat_no = (t * np.repeat(hr.clip(30, 300), 25) / 60).astype(np.int64)
    status[on_beat] |= np.where(beat_no[on_beat] % 7 == 0, 0x04, 0x02)
    status[on_beat & (beat_no % 11 == 0)] |= 0x20
    status[(frame_packet % 2000) < 30] |= 0x10
    status[np.repeat(gone, 25)] |= 0x08
    status[(frame_packet % 5000) < 6] |= 0x40
    pleth = (32768 + 20000 * np.sin(2 * np.pi * beat_phase)).astype(np.int64)
    frames = np.empty((n, 5), dtype=np.int64)
    frames[:, 0], frames[:, 1], frames[:, 2] = status, pleth >> 8, pleth & 0xFF
    frames[:, 3] = table.reshape(-1)
    frames[:, 4] = frames[:, :4].sum(axis=1) & 0xFF
    return frames.astype(np.uint8).tobytes(), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--chunk", type=int, default=4096)
    args = parser.parse_args()
    stream, n = df7_stream(args.hours)
    chunks = [stream[i : i + args.chunk] for i in range(0, len(stream), args.chunk)]
    print(f"stream: {args.hours:g} h of DF7, {n:,} frames, {len(stream) / 1e6:.2f} MB, "
          f"{args.chunk} B chunks")  # fmt: skip

    # Each chunk arrives when its last byte was sent (9600 baud: 960 bytes a second).
    times = [min(len(stream), (i + 1) * args.chunk) / 960 for i in range(len(chunks))]
    dec = NoninDf7Decoder(device="spo2")
    start = time.perf_counter()
    out = [r for chunk, t in zip(chunks, times, strict=True) for r in dec.feed(chunk, t)]
    dec_s = time.perf_counter() - start
    ref = ReferenceDf7(device="spo2")
    start = time.perf_counter()
    ref_out = [r for chunk, t in zip(chunks, times, strict=True) for r in ref.feed(chunk, t)]
    ref_s = time.perf_counter() - start
    # The waveforms, call by call (not timed).
    dec2, ref2 = NoninDf7Decoder(device="spo2"), ReferenceDf7(device="spo2")
    same_pleth = all(
        dec2.feed(chunk, t) is not None
        and ref2.feed(chunk, t) is not None
        and dec2.waveform() == ref2.waveform()
        for chunk, t in zip(chunks, times, strict=True)
    )

    print(f"bulk decoder:      {n / dec_s:12,.0f} frames/s ({len(out):,} readings, "
          f"{dec_s * 1e3:,.0f} ms)")  # fmt: skip
    print(f"reference (loop):  {n / ref_s:12,.0f} frames/s ({len(ref_out):,} readings, "
          f"{ref_s * 1e3:,.0f} ms)")  # fmt: skip
    print(f"speed-up: {ref_s / dec_s:.1f}x; same readings: {out == ref_out}; same pleth: "
          f"{same_pleth}; counters: records {dec.records}, frames_bad {dec.frames_bad}, "
          f"bytes_skipped {dec.bytes_skipped}")  # fmt: skip


if __name__ == "__main__":
    main()
