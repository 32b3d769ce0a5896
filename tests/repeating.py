"""The chunking property shared by the decoders that give Readings on change and once a
second (`RepeatingDecoder`: the Contec and the Nonin binary)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import strategies as st

from sessiond.devices.decoder import EMIT_EVERY_S, RepeatingDecoder

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.model import Reading


def chunkings(draw: st.DrawFn, size: int) -> list[int]:
    """Cut points of a buffer of `size` bytes: chunks of 1 byte up to 4 KiB or the whole."""
    largest = draw(st.sampled_from([1, 2, 7, 40, 200, 400, 4096, size]))
    cuts, at = [], 0
    while at < size:
        at += draw(st.integers(1, max(1, largest)))
        cuts.append(min(at, size))
    return cuts


def check_any_chunking(  # noqa: PLR0917  (the property's parts, each a parameter)
    new: Callable[[], RepeatingDecoder],
    reads: list[bytes],
    times: list[float],
    draw: st.DrawFn,
    seen: Callable[[list[Reading]], Any],
    counters: Callable[[Any], Any],  # of the decoder `new` makes
) -> None:
    """Each byte keeps the time its read arrived at; cut the bytes anywhere (1 byte to the
    whole stream), fed one by one or many pieces at once (`feed_timed`): the same Readings,
    the same counts, the same waveform, and the frames in the same pieces as read by read;
    and no valid packet a second or more after the last Reading before it."""
    reference = new()
    expected: list[Reading] = []
    pleth: list[int] = []
    for read, t in zip(reads, times, strict=True):
        expected += reference.feed(read, t)
        pleth += reference.waveform()
    joined = b"".join(reads)
    byte_times = [t for read, t in zip(reads, times, strict=True) for _ in read]
    # A piece never spans two arrival times.
    cuts = sorted(set(chunkings(draw, len(joined))) | {
        sum(len(r) for r in reads[: k + 1]) for k in range(len(reads) - 1)
        if times[k] != times[k + 1]
    })  # fmt: skip
    starts = [0, *cuts[:-1]]
    one_by_one = new()
    got: list[Reading] = []
    got_pleth: list[int] = []
    frame_cuts: list[int] = []  # the cuts (by index) in which packets ended
    for i, (a, b) in enumerate(zip(starts, cuts, strict=True)):
        records = one_by_one.records
        got += one_by_one.feed(joined[a:b], byte_times[b - 1])
        got_pleth += one_by_one.waveform()
        if one_by_one.records != records:
            frame_cuts.append(i)
    assert seen(got) == seen(expected)
    assert got_pleth == pleth
    # The same pieces, in groups of any size, through feed_timed.
    in_bulk = new()
    bulk: list[Reading] = []
    bulk_pleth: list[int] = []
    bulk_frames: list[int] = []
    group = draw(st.integers(1, len(cuts)))
    for g in range(0, len(cuts), group):
        ends = np.array(cuts[g : g + group], dtype=np.int64)
        base = starts[g]
        arrived = np.array([byte_times[b - 1] for b in cuts[g : g + group]])
        timed = in_bulk.feed_timed(joined[base : int(ends[-1])], ends - base, arrived)
        assert [arrived[p] for p in timed.pieces] == [r.t for r in timed.readings]
        bulk += timed.readings
        bulk_pleth += in_bulk.waveform()
        bulk_frames += (timed.frames + g).tolist()
    assert seen(bulk) == seen(expected)
    assert bulk_pleth == pleth
    assert bulk_frames == frame_cuts
    for dec in (one_by_one, in_bulk):
        assert counters(dec) == counters(reference)
        assert dec._pending == reference._pending
    reading_times = [r.t for r in expected]
    for i in frame_cuts:
        t = byte_times[cuts[i] - 1]
        last = reading_times[bisect.bisect_right(reading_times, t) - 1]
        assert t - last < EMIT_EVERY_S
