"""M3U / M3U8 parsing: what real players write, and errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessiond.room.playlist import (
    Entry,
    PlaylistError,
    find_playlist,
    load_playlist,
    parse_m3u,
)


@pytest.fixture
def music(tmp_path: Path) -> Path:
    (tmp_path / "audio").mkdir()
    for name in ("one.wav", "two.wav", "three.flac"):
        (tmp_path / "audio" / name).write_bytes(b"RIFF")
    return tmp_path


def test_extended_m3u_with_titles_comments_and_blank_lines(music):
    text = (
        "#EXTM3U\n"
        "# a comment\n"
        "\n"
        "#EXTINF:72,Settling, in D\n"
        "audio/one.wav\n"
        "#EXTALB:some directive we do not use\n"
        "   audio/two.wav   \n"
        '#EXTINF:-1 tvg-id="x" group-title="y",Live, stream\n'
        "http://radio.example/calm?x=1\n"
    )
    entries = parse_m3u(text, base_dir=music)
    assert entries == (
        Entry(path=music / "audio/one.wav", title="Settling, in D", duration_s=72.0, line=5),
        Entry(path=music / "audio/two.wav", line=7),
        Entry(url="http://radio.example/calm?x=1", title="Live, stream", line=9),
    )
    assert [e.name for e in entries] == ["one.wav", "two.wav", "calm"]


def test_plain_m3u_bom_and_crlf(music):
    text = "\ufeffaudio/one.wav\r\n\r\naudio/two.wav\r\n"
    assert [e.path for e in parse_m3u(text, base_dir=music)] == [
        music / "audio/one.wav",
        music / "audio/two.wav",
    ]


def test_absolute_paths_and_urls_are_kept(music):
    absolute = music / "audio" / "three.flac"
    text = f"{absolute}\nfile:///srv/music/a%20b.ogg\nhttps://example.org/x.mp3\n"
    entries = parse_m3u(text, base_dir=Path("/elsewhere"))
    assert entries[0].path == absolute
    assert entries[1].url == "file:///srv/music/a%20b.ogg"
    assert entries[1].name == "a b.ogg"
    assert entries[2].url == "https://example.org/x.mp3"


def test_windows_separators_in_relative_paths(music):
    assert parse_m3u("audio\\one.wav\n", base_dir=music)[0].path == music / "audio" / "one.wav"


def test_an_extinf_title_belongs_to_the_next_entry_only(music):
    text = "#EXTINF:10,First\naudio/one.wav\naudio/two.wav\n#EXTINF:abc\naudio/one.wav\n"
    entries = parse_m3u(text, base_dir=music)
    assert [(e.title, e.duration_s) for e in entries] == [
        ("First", 10.0),
        (None, None),
        (None, None),
    ]


def test_a_missing_file_names_the_playlist_line_and_file(music):
    playlist = music / "onset.m3u"
    playlist.write_text("#EXTM3U\naudio/one.wav\n\naudio/gone.wav\n")
    with pytest.raises(PlaylistError) as caught:
        load_playlist(playlist)
    assert str(caught.value) == f"{playlist}:4: no such file: audio/gone.wav"
    assert (caught.value.path, caught.value.line) == (str(playlist), 4)
    # Unchecked: the entry stays (used while libvlc is unavailable).
    assert len(load_playlist(playlist, check_files=False).entries) == 2


def test_a_directory_is_not_a_track(music):
    with pytest.raises(PlaylistError, match=r":1: no such file: audio$"):
        parse_m3u("audio\n", base_dir=music, source="x.m3u")


def test_a_missing_playlist_is_named(tmp_path):
    with pytest.raises(PlaylistError, match=r"effect\.m3u: no such playlist") as caught:
        load_playlist(tmp_path / "effect.m3u")
    assert caught.value.line is None


def test_an_empty_playlist_is_an_error(tmp_path):
    path = tmp_path / "empty.m3u"
    path.write_text("#EXTM3U\n# nothing here\n")
    with pytest.raises(PlaylistError, match="no entries"):
        load_playlist(path)


def test_encodings_m3u8_is_utf8_and_m3u_falls_back_to_latin1(music):
    (music / "audio" / "café.wav").write_bytes(b"RIFF")
    utf8 = music / "a.m3u8"
    utf8.write_text("#EXTINF:5,Café\naudio/café.wav\n", encoding="utf-8")
    assert load_playlist(utf8).entries[0].title == "Café"

    latin = music / "b.m3u"
    latin.write_bytes("#EXTINF:5,Café\naudio/one.wav\n".encode("latin-1"))
    assert load_playlist(latin).entries[0].title == "Café"

    bad = music / "c.m3u8"
    bad.write_bytes(b"audio/one.wav\n#EXTINF:5,Caf\xe9\naudio/two.wav\n")
    with pytest.raises(PlaylistError, match=r"c\.m3u8:2: not UTF-8"):
        load_playlist(bad)


def test_playlist_name_is_the_file_stem(music):
    path = music / "recovery.m3u"
    path.write_text("audio/one.wav\n")
    playlist = load_playlist(path)
    assert playlist.name == "recovery"
    assert playlist.entries[0].path == music / "audio" / "one.wav"


def test_find_playlist_prefers_m3u8_and_accepts_file_names(tmp_path):
    assert find_playlist(tmp_path, "onset") == tmp_path / "onset.m3u"
    (tmp_path / "onset.m3u8").write_text("x\n")
    assert find_playlist(tmp_path, "onset") == tmp_path / "onset.m3u8"
    assert find_playlist(tmp_path, "custom/calm.m3u") == tmp_path / "custom" / "calm.m3u"
