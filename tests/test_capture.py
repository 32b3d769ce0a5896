"""Capture files read in blocks (DESIGN §6): the same records and the same errors, naming the
same lines, as reading them one by one; and replay's reading lines as `json` writes them."""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessiond.model import Quality, Reading
from sessiond.records import capture
from sessiond.records.capture import CaptureError, CaptureReader, parse_seconds
from sessiond.records.replay import _ReadingLine
from sessiond.wire import reading_json

HEAD = "# sessiond-capture 1\n# port spo2 contec-v7\n# port nibp suntech-advantage\n"
PACKET = "018086b580c7e1a881"

Record = tuple[float, str, str, bytes]


def reference(text: str, until: float | None = None) -> list[Record] | str:  # noqa: PLR0911
    """The records of a capture read line by line by the rules of DESIGN §6, or the error."""
    lines = text.splitlines()
    ports: set[str] = set()
    out: list[Record] = []
    last = 0.0
    for lineno, line in enumerate(lines, 1):
        if line.startswith("#"):
            words = line[1:].split()
            if words[:1] == ["port"]:
                ports.add(words[1])
            continue
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            return f"line {lineno}: expected 'SECONDS PORT DIRECTION HEX'"
        raw_t, port, direction, raw_hex = parts
        try:
            t = parse_seconds(raw_t)
        except ValueError as exc:
            return f"line {lineno}: bad time: {exc}"
        if t < last:
            return f"line {lineno}: time {raw_t} goes back (after {last:g})"
        if port not in ports:
            return f"line {lineno}: undeclared port {port!r}"
        if direction not in "<>" or len(direction) != 1:
            return f"line {lineno}: direction must be '<' or '>', not {direction!r}"
        try:
            data = bytes.fromhex(raw_hex)
        except ValueError:
            return f"line {lineno}: bad hex {raw_hex[:20]!r}"
        if until is not None and t > until:
            break
        last = t
        out.append((t, port, direction, data))
    return out


def read(data: bytes, until: float | None = None) -> list[Record] | str:
    """The records as the block reader gives them, or its error."""
    try:
        reader = CaptureReader(io.BytesIO(data))
        return [
            (r.t, r.port, r.direction, r.data)
            for block in reader.blocks(until=until)
            for r in block.records()
        ]
    except CaptureError as exc:
        return str(exc)


@pytest.fixture(params=[1 << 20, 23, 200], ids=["1MiB", "23B", "200B"])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of a megabyte, and blocks so small that lines are split across them."""
    monkeypatch.setattr(capture, "BLOCK_BYTES", request.param)
    size: int = request.param
    return size


def writer_lines(n: int, *, start: float = 0.0, port: str = "spo2") -> list[str]:
    """Lines as `CaptureWriter` writes them: fixed-size chunks, 60 a second."""
    return [f"{start + k / 60:.3f} {port} < {PACKET}" for k in range(n)]


def test_a_line_split_across_blocks_is_read_whole(block_bytes):
    lines = [*writer_lines(400), f"7.000 spo2 < {PACKET * 30}", *writer_lines(50, start=7.5)]
    text = HEAD + "\n".join(lines) + "\n"
    got = read(text.encode())
    assert got == reference(text)
    assert isinstance(got, list)
    assert len(got) == 451
    assert got[400][3] == bytes.fromhex(PACKET) * 30


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("9.000 spo2 < 01zz", "bad hex '01zz'"),
        ("9.000 spo2 < 018", "bad hex '018'"),
        ("1.000 spo2 < 01", "time 1.000 goes back (after 8.3)"),
        ("nan spo2 < 01", "bad time: not a finite number of seconds: 'nan'"),
        ("9.000 ox < 01", "undeclared port 'ox'"),
        ("9.000 spo2 ? 01", "direction must be '<' or '>', not '?'"),
        ("9.000 spo2 <", "expected 'SECONDS PORT DIRECTION HEX'"),
        ("9.000 spo2 < 01 02", "expected 'SECONDS PORT DIRECTION HEX'"),
    ],
)
def test_a_bad_line_far_into_the_file_is_named(block_bytes, bad, problem):
    """The error names the bad line (counting the header) whichever block it falls in."""
    lines = writer_lines(500)
    lines[499] = bad
    text = HEAD + "\n".join(lines) + "\n" + "\n".join(writer_lines(20, start=9.5)) + "\n"
    assert read(text.encode()) == reference(text) == f"line {3 + 500}: {problem}"


def test_lines_before_a_bad_line_are_given_before_the_error(block_bytes):
    """As when reading line by line: the records before the bad line come out first."""
    text = HEAD + "\n".join([*writer_lines(300), "zz"]) + "\n"
    reader = CaptureReader(io.BytesIO(text.encode()))
    blocks = reader.blocks()
    got: list[float] = []
    for block in blocks:
        got += block.times.tolist()
        if len(got) == 300:
            break
    with pytest.raises(CaptureError, match="line 304: "):
        next(blocks)
    assert len(got) == 300


def test_not_utf8_is_named_in_any_block(block_bytes):
    data = (HEAD + "\n".join(writer_lines(300)) + "\n").encode() + b"5.100 spo2 < 0\xff\n"
    assert read(data) == "line 304: not UTF-8 text"


def test_line_ends_and_streams(block_bytes):
    """CR LF and lone CR end lines as a text stream reads them; a text stream and a list of
    lines give what the bytes give."""
    lines = [*writer_lines(100), "# a note", "", *writer_lines(100, start=2.0)]
    for eol in ("\n", "\r\n", "\r"):
        text = HEAD.replace("\n", eol) + eol.join(lines) + eol
        assert read(text.encode()) == reference(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = HEAD + "\n".join(lines) + "\n"
    expected = reference(text)
    as_text = CaptureReader(io.StringIO(text))
    assert [(r.t, r.port, r.direction, r.data) for r in as_text] == expected
    as_lines = CaptureReader(text.splitlines(keepends=True))
    assert [(r.t, r.port, r.direction, r.data) for r in as_lines] == expected


def test_after_end_at_nothing_is_read_but_the_first_line_is_checked(block_bytes):
    lines = [*writer_lines(300), "9.000 spo2 < zz"]
    text = HEAD + "\n".join(lines) + "\n"
    assert read(text.encode(), until=2.0) == reference(text, until=2.0)
    lines = [*writer_lines(120), "9.000 spo2 < zz", "zz"]
    text = HEAD + "\n".join(lines) + "\n"
    assert read(text.encode(), until=2.0) == "line 124: bad hex 'zz'"


def test_ports_and_directions_in_a_block():
    """Several ports and both directions: each port's bytes from the device in line order."""
    lines = [
        "0.000 spo2 < 0102",
        "0.100 nibp > 3a20a6",
        "0.200 nibp < 3e044f6f",
        "0.300 spo2 < 0304",
        "0.400 nibp < 3e",
    ]
    reader = CaptureReader(io.BytesIO((HEAD + "\n".join(lines) + "\n").encode()))
    (block,) = list(reader.blocks())
    assert block.pieces["spo2"].data == bytes.fromhex("01020304")
    assert block.pieces["spo2"].lines.tolist() == [0, 3]
    assert block.pieces["spo2"].ends.tolist() == [2, 4]
    assert block.pieces["nibp"].data == bytes.fromhex("3e044f6f3e")
    assert block.sent == {"nibp": [(1, bytes.fromhex("3a20a6"))]}
    assert block.incoming.tolist() == [True, False, True, True, True]


_TIMES = st.one_of(
    st.floats(0, 50, allow_nan=False).map(lambda t: f"{t:.3f}"),
    st.sampled_from(
        ["1", "2.", ".5", "1e1", "0x1", "inf", "-1", "1_0", "3.0.0", "", "12345678901234567"]
    ),
)  # fmt: skip
_LINES = st.one_of(
    st.builds(
        lambda t, port, d, h, sep: sep.join([t, port, d, h]),
        _TIMES,
        st.sampled_from(["spo2", "nibp", "ox"]),
        st.sampled_from(["<", "<", ">", "?"]),
        st.sampled_from([PACKET, "01", "0", "zz", "AbCd", "30 31"]),
        st.sampled_from([" ", " ", " ", "  ", "\t"]),
    ),
    st.sampled_from(["# note", "", "   "]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_LINES, max_size=40), st.sampled_from([17, 64, 1 << 20]), st.booleans())
def test_blocks_read_what_the_line_rules_read(lines, size, sorted_times):
    """Any mix of plain, oddly spaced and bad lines: the same records, or the same error."""
    if sorted_times:  # mostly good captures: times in order
        lines = sorted(lines, key=lambda line: line.split(" ")[0])
    text = HEAD + "\n".join(lines) + "\n"
    old, capture.BLOCK_BYTES = capture.BLOCK_BYTES, size
    try:
        assert read(text.encode()) == reference(text)
    finally:
        capture.BLOCK_BYTES = old


_VALUES = st.one_of(st.none(), st.integers(0, 300))


@given(
    st.builds(
        Reading,
        t=st.floats(0, 1e6, allow_nan=False),
        device=st.sampled_from(["spo2", "ox 2", 'q"uote', "é"]),
        spo2=_VALUES,
        pr=_VALUES,
        pi=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        sys=_VALUES,
        flags=st.integers(0, 63).map(Quality),
    )
)
def test_a_reading_line_is_what_json_writes(r):
    """Replay builds reading lines from strings: the same bytes as `json.dumps`."""
    assert _ReadingLine()(r) == json.dumps(reading_json(r), allow_nan=False) + "\n"


def test_a_reading_with_a_value_json_refuses_raises():
    r = Reading(t=1.0, device="spo2", pi=math.nan)
    with pytest.raises(ValueError, match="JSON"):
        _ReadingLine()(r)
