"""masimo-ascii1: golden lines of reference/devices.md §2.5, whole, byte by byte and in chunks."""

from __future__ import annotations

import bisect
import random
from datetime import datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiond.devices import make_decoder
from sessiond.devices.lines import LineDecoder
from sessiond.devices.masimo import MAX_LINE, MasimoAscii1Decoder
from sessiond.model import Quality, Reading
from tests.repeating import chunkings

RAD8 = (
    b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
RAD8_B = (
    b"02/22/16 22:47:46 SN=0000056661 SPO2=098% BPM=096 PI=03.95% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"
)
RAD8_ALARM = (
    b"03/06/05 21:11:30 SN=0000066575 SPO2=098% BPM=057 PI=07.02% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- ALARM=0038 EXC=000800\r\n"
)
RAD8_NO_SENSOR = (
    b"03/19/16 13:37:12 SN=0000093112 SPO2=---% BPM=--- DESAT=-- # PIDELTA=+-- ALARM=0000 "
    b"EXC=000001\r\n"
)
RAINBOW = (
    b"03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- "
    b"SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000\r\n"
)
BLUE = (
    b"05/15/07 08:12:21 SN=0000070986 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
    b"DESAT=-- PIDELTA=+-- PVI=--- ALARM=0000 EXC=000000\r\n"
)
RADICAL7_FULL = (
    b"12/01/05 11:56:29 SN=0123456789 SPO2=098% BPM=240 PI=20.00% SPCO=01.0% SPMET=00.5% "
    b"DESAT=01 PIDELTA=-02 PVI=027 ALARM=0000 EXC=000820\r\n"
)
RADICAL5 = b"09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800\r\n"

GOLDEN = [RAD8, RAD8_B, RAD8_ALARM, RAD8_NO_SENSOR, RAINBOW, BLUE, RADICAL7_FULL, RADICAL5]


def values(r: Reading) -> tuple[int | None, int | None, float | None, Quality]:
    return (r.spo2, r.pr, r.pi, r.flags)


EXPECTED = [
    (98, 97, 3.60, Quality.NONE),
    (98, 96, 3.95, Quality.NONE),
    (98, 57, 7.02, Quality.NONE),
    (None, None, None, Quality.NO_SENSOR),
    (98, 123, 0.55, Quality.LOW_SIGNAL),
    (None, None, None, Quality.NONE),
    (None, None, None, Quality.SENSOR_OFF),  # EXC 0x020: sensor off, so its numbers are withheld
    (97, 64, 11.82, Quality.NONE),
]


def decode(chunks: list[bytes]) -> tuple[list[Reading], MasimoAscii1Decoder]:
    dec = MasimoAscii1Decoder(device="spo2")
    out: list[Reading] = []
    for i, chunk in enumerate(chunks):
        out += dec.feed(chunk, float(i))
    return out, dec


def test_golden_lines_decode_all_at_once():
    """Every captured line decodes to the values devices.md §2.5 derives."""
    readings, dec = decode([b"".join(GOLDEN)])
    assert [values(r) for r in readings] == EXPECTED
    assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (8, 0, 0)
    assert readings[0].device == "spo2"
    assert readings[0].device_time == datetime(2016, 2, 22, 22, 47, 45)  # noqa: DTZ001


def test_golden_lines_decode_byte_by_byte():
    stream = b"".join(GOLDEN)
    readings, dec = decode([stream[i : i + 1] for i in range(len(stream))])
    assert [values(r) for r in readings] == EXPECTED
    assert dec.bytes_skipped == 0


@pytest.mark.parametrize("seed", range(5))
def test_golden_lines_decode_in_random_chunks(seed):
    rng = random.Random(seed)
    stream = b"".join(GOLDEN)
    chunks, i = [], 0
    while i < len(stream):
        n = rng.randint(1, 40)
        chunks.append(stream[i : i + n])
        i += n
    readings, _ = decode(chunks)
    assert [values(r) for r in readings] == EXPECTED


def test_reading_time_is_the_arrival_of_the_line_end():
    """Host time, not device time: the reading carries the time its last byte arrived."""
    dec = MasimoAscii1Decoder(device="spo2")
    assert dec.feed(RAD8[:50], 10.0) == []
    (r,) = dec.feed(RAD8[50:], 11.5)
    assert r.t == 11.5


def test_nul_bytes_and_partial_first_line_are_tolerated():
    """Leading NULs and the tail of a line cut at connection time are skipped, not fatal."""
    stream = b"\x00\x00\x00" + RAD8[40:] + b"\x00" + RAD8_B
    readings, dec = decode([stream])
    assert [values(r) for r in readings] == [EXPECTED[1]]
    assert dec.bytes_skipped == len(RAD8) - 40 - 2 + 1  # the tail, counted once with its CR
    assert dec.frames_bad == 0


def test_lf_only_and_blank_lines_between_records():
    stream = RAD8.replace(b"\r\n", b"\n") + b"\r\n\r\n" + RAD8_B
    readings, dec = decode([stream])
    assert [values(r) for r in readings] == EXPECTED[:2]
    assert dec.bytes_skipped == 0


def test_garbage_before_between_and_after_resynchronises_and_counts():
    junk = bytes([0xFF, 0x13, 0x7E, 0x80, 0x11])
    stream = junk + RAD8 + junk + RAD8_B + junk
    readings, dec = decode([stream])
    assert [values(r) for r in readings] == EXPECTED[:2]
    # Junk glued before a line is skipped up to its timestamp; the trailing junk waits for more.
    assert dec.bytes_skipped == 2 * len(junk)


def test_impossible_values_reject_the_frame():
    bad = RAD8.replace(b"SPO2=098%", b"SPO2=198%")
    broken = RAD8.replace(b"BPM=097", b"BPM=0x7")
    readings, dec = decode([bad + broken + RAD8_B])
    assert [values(r) for r in readings] == [EXPECTED[1]]
    assert dec.frames_bad == 2
    assert dec.records == 1


def test_line_without_spo2_or_bpm_is_rejected():
    readings, dec = decode([b"02/22/16 22:47:45 SN=0000056661 ALARM=0000 EXC=000800\r\n"])
    assert readings == []
    assert dec.frames_bad == 1


def test_searching_and_artifact_keep_their_numbers_with_flags():
    """Quality flags that do not mean 'no patient' travel with the number, for the alarm gate."""
    line = RAD8.replace(b"EXC=000800", b"EXC=000818")
    (r,), _ = decode([line])
    assert (r.spo2, r.pr) == (98, 97)
    assert r.flags == Quality.SEARCHING | Quality.ARTIFACT
    assert r.flags.names() == ["searching", "artifact"]


def test_endless_noise_without_a_line_end_is_bounded():
    dec = MasimoAscii1Decoder(device="spo2")
    for i in range(10):
        dec.feed(b"x" * 200, float(i))
    assert len(dec._pending) <= MAX_LINE
    assert dec.bytes_skipped >= 2000 - MAX_LINE
    assert [values(r) for r in dec.feed(b"\r\n" + RAD8, 11.0)] == [EXPECTED[0]]


def test_registry_makes_the_decoder_by_protocol_name():
    dec = make_decoder("masimo-ascii1", device="ox")
    assert isinstance(dec, MasimoAscii1Decoder)
    assert dec.device == "ox"
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("nonsense", device="ox")


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data):
    dec = MasimoAscii1Decoder(device="spo2")
    for r in dec.feed(data, 0.0):
        assert r.spo2 is None or 0 <= r.spo2 <= 100


@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_valid_stream_after_garbage_decodes_completely(garbage, chunk):
    """Whatever came before, a line end and then good lines decode every good line."""
    stream = garbage + b"\r\n" + b"".join(GOLDEN)
    dec = MasimoAscii1Decoder(device="spo2")
    out: list[Reading] = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i : i + chunk], 0.0)
    assert [values(r) for r in out[-len(GOLDEN) :]] == EXPECTED


# --- lines by the layout of their shape: the same as `_line` on each ------------------------

_FIELDS = {
    "lead": st.sampled_from(["", "", "", "x", "12 ", "--/"]),
    "date": st.sampled_from(
        ["02/22/16", "13/01/20", "02/29/16", "02/29/17", "00/10/20", "1a/01/20", "02/2#/16"]
    ),
    "time": st.sampled_from(
        ["22:47:45", "24:00:00", "23:59:59", "12:60:00", "0x:00:00", "12:00:61", "22:47:#5"]
    ),
    "sn": st.sampled_from(["0000056661", "SPO2=097%", "----------"]),
    "spo2key": st.sampled_from(["SPO2", "SPO7", "SPO22", "SPO", "SPO#"]),
    "spo2": st.sampled_from(
        ["098%", "100%", "101%", "---%", "-1%", "09_8", "98%%", "0x5", "9-9", "", "0#8%"]
    ),
    "bpm": st.sampled_from(["097", "300", "301", "---", "+97", "097%", "9 7", "0", "#97"]),
    "pi": st.sampled_from(
        [
            *("03.60%", "--.--%", "100.0%", "100.1%", "1e1%", "nan%", ".5%", "5.%", "1.2.3%"),
            *("%", "0#.60%", "00.05%", "99.99%", "3.6%"),
        ]
    ),
    "exc": st.sampled_from(
        [
            *("000800", "000020", "000001", "0x0800", "00_800", "zz", "000410", "00002A"),
            *("0000c0", "00#800"),
        ]
    ),
}
_PLAIN = {
    "lead": "", "date": "02/22/16", "time": "22:47:45", "sn": "0000056661", "spo2key": "SPO2",
    "spo2": "098%", "bpm": "097", "pi": "03.60%", "exc": "000800",
}  # fmt: skip


@st.composite
def rad8_lines(draw: st.DrawFn) -> list[bytes]:
    """Lines of one device, most plain (their values changing), some with odd or impossible
    fields or keys."""
    lines = []
    for _ in range(draw(st.integers(1, 200))):
        plain = draw(st.integers(0, 9)) > 0
        f = {key: _PLAIN[key] if plain else draw(field) for key, field in _FIELDS.items()}
        if plain and draw(st.booleans()):
            f["spo2"] = f"{draw(st.integers(0, 100)):03d}%"
            f["bpm"] = f"{draw(st.integers(0, 300)):03d}"
            f["pi"] = f"{draw(st.integers(0, 9999)) / 100:05.2f}%"
            hms = [draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))]
            f["time"] = ":".join(f"{x:02d}" for x in hms)
        line = (
            f"{f['lead']}{f['date']} {f['time']} SN={f['sn']} {f['spo2key']}={f['spo2']} "
            f"BPM={f['bpm']} PI={f['pi']} SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- "
            f"ALARM=0000 EXC={f['exc']}"
        )
        lines.append(line.encode())
    return lines


@given(rad8_lines(), st.integers(1, 300))
def test_lines_by_layout_decode_as_each_line_alone(lines, chunk):
    """A line of a shape already seen is read by that shape's layout, without searching for
    its keys: exactly the readings and counts `_line` gives for each line, whatever the
    chunks (a layout is learnt from the first line of each shape)."""
    data = b"\r\n".join(lines) + b"\r\n"
    bulk = MasimoAscii1Decoder(device="spo2")
    got: list[Reading] = []
    for i in range(0, len(data), chunk):
        got += bulk.feed(data[i : i + chunk], 5.0)
    one = MasimoAscii1Decoder(device="spo2")
    expected = [r for line in lines if (r := one._line(line, 5.0)) is not None]
    assert got == expected
    assert (bulk.records, bulk.frames_bad, bulk.bytes_skipped) == (
        one.records, one.frames_bad, one.bytes_skipped,
    )  # fmt: skip


def test_a_key_hidden_by_the_shape_is_checked():
    """`SPO7=` has the shape of `SPO2=`: a line with it is not read by the SPO2 layout."""
    good = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% EXC=000800\r\n"
    dec = MasimoAscii1Decoder(device="spo2")
    assert [r.spo2 for r in dec.feed(good * 3, 1.0)] == [98, 98, 98]
    assert dec.feed(good.replace(b"SPO2=", b"SPO7="), 2.0) == []
    assert dec.frames_bad == 1
    # The same within a read of many lines (read as a block).
    bad = good.replace(b"SPO2=", b"SPO7=")
    assert [r.spo2 for r in dec.feed(good * 30 + bad + good * 30, 3.0)] == [98] * 60
    assert dec.frames_bad == 2


@pytest.mark.parametrize("field", [b"098%", b"097 ", b"03.60", b"000800", b":45 "])
def test_a_hash_where_a_digit_was_is_read_as_the_line_alone(field):
    """`#` is how a shape marks a digit: sent in place of one, it is not read as a digit
    (the line is bad, or has no device time), alone or within a read of many lines."""
    good = b"02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% EXC=000800\r\n"
    bad = good.replace(field, field[:1] + b"#" + field[2:], 1)
    lines = [good, bad, *[good] * 30, bad, *[good] * 30]
    dec, one = MasimoAscii1Decoder(device="spo2"), MasimoAscii1Decoder(device="spo2")
    got = dec.feed(good, 1.0) + dec.feed(bad, 1.0) + dec.feed(b"".join(lines[2:]), 1.0)
    assert got == [r for line in lines if (r := one._line(line[:-2], 1.0))]
    assert (dec.records, dec.frames_bad) == (one.records, one.frames_bad)


@given(rad8_lines(), st.data())
def test_blocks_of_lines_decode_as_each_line_alone(lines, data):
    """Reads of many whole lines of one shape are read as a block: the same readings and
    counts as `_line` gives for each line, each line at the time of the read its end came
    in, whatever the cuts, read by read (`feed`) or many reads at once (`feed_timed`); a
    line that ends in LF alone or has a NUL in it is read as `_lines` reads it, and noise
    longer than a line as the reads one by one through `LineDecoder.feed` take it."""
    sent: list[bytes] = []
    ends: list[int] = []  # where each line's end (CR, or LF alone) is in the stream
    at = 0
    noisy = False
    for line in lines:
        odd = data.draw(st.sampled_from(["", "", "", "", "", "", "", "lf", "nul", "noise"]))
        if odd == "nul":
            k = data.draw(st.integers(0, len(line)))
            line = line[:k] + b"\x00" + line[k:]  # noqa: PLW2901 - as sent
        if odd == "noise" and data.draw(st.integers(0, 9)) == 0:
            noisy = True
            line = b"~" * data.draw(st.sampled_from([400, 600, 2000])) + line  # noqa: PLW2901
        sent.append(line + (b"\n" if odd == "lf" else b"\r\n"))
        ends.append(at + len(line))
        at += len(sent[-1])
    joined = b"".join(sent)
    cuts = chunkings(data.draw, len(joined))
    starts = [0, *cuts[:-1]]
    arrived = [float(i) for i in range(len(cuts))]
    one = MasimoAscii1Decoder(device="spo2")
    expected = [
        r
        for line, end in zip(lines, ends, strict=True)
        if (r := one._line(line, arrived[bisect.bisect_right(cuts, end)])) is not None
    ]
    if noisy:  # what is skipped depends on the reads: each through the line path
        one = MasimoAscii1Decoder(device="spo2")
        expected = []
        for a, b, t in zip(starts, cuts, arrived, strict=True):
            expected += LineDecoder.feed(one, joined[a:b], t)
    read_by_read = MasimoAscii1Decoder(device="spo2")
    got: list[Reading] = []
    for a, b, t in zip(starts, cuts, arrived, strict=True):
        got += read_by_read.feed(joined[a:b], t)
    in_bulk = MasimoAscii1Decoder(device="spo2")
    bulk: list[Reading] = []
    group = data.draw(st.integers(1, len(cuts)))
    for g in range(0, len(cuts), group):
        piece_ends = np.array(cuts[g : g + group], dtype=np.int64)
        times = np.array(arrived[g : g + group])
        chunk = joined[starts[g] : int(piece_ends[-1])]
        timed = in_bulk.feed_timed(chunk, piece_ends - starts[g], times)
        assert [times[p] for p in timed.pieces] == [r.t for r in timed.readings]
        assert timed.frames.tolist() == sorted(set(timed.pieces))
        made = list(timed.readings)  # in columns from a block: a Reading when looked at
        if made:
            assert [timed.readings[-1], *timed.readings[:2]] == [made[-1], *made[:2]]
            assert [timed.readings[i] for i in range(len(made))] == made
        bulk += made
    assert got == expected
    assert bulk == expected
    for dec in (read_by_read, in_bulk):
        assert (dec.records, dec.frames_bad, dec.bytes_skipped) == (
            one.records, one.frames_bad, one.bytes_skipped,
        )  # fmt: skip
