"""`sessiond sessions`, `export`, `report` and `purge` on a record made by the real recorder."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from playwright.async_api import async_playwright, expect
from pydantic import ValidationError
from pypdf import PdfReader

from sessiond.cli import main
from sessiond.records.store import SCHEMA_VERSION
from tests.record_fixture import (
    MAIN,
    MAIN_START,
    NOTE,
    OLD,
    OPEN,
    OPEN_START,
    record_clinic,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

TABLES = ("readings", "phases", "alarms", "actions", "device_events", "events")
#: A fixed local zone one hour east of UTC (POSIX form: no tz database needed).
ZONE = "CET-1"


@pytest.fixture(scope="session")
def clinic(tmp_path_factory) -> Path:
    """The record of `tests.record_fixture`, made once; tests that write use a copy."""
    path: Path = tmp_path_factory.mktemp("record") / "sessiond.sqlite"
    asyncio.run(record_clinic(path))
    return path


@pytest.fixture(autouse=True)
def local_zone(monkeypatch):
    """Local time is UTC+1 here, so listings and reports show 09:00 UTC as 10:00."""
    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def record(clinic, tmp_path) -> Path:
    path: Path = tmp_path / "copy.sqlite"
    shutil.copyfile(clinic, path)
    return path


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that commits and is closed on the way out (WAL checkpointed)."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def config_for(path: Path) -> Path:
    config = path.with_suffix(".toml")
    config.write_text(f"[records]\npath = {json.dumps(str(path))}\n")
    return config


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def db_rows(path: Path, table: str, session_id: str = MAIN) -> list[dict[str, Any]]:
    """The session's rows as stored, up to its end, without the record's own keys."""
    with connect(path) as db:
        db.row_factory = sqlite3.Row
        (ended_t,) = db.execute(
            "SELECT ended_t FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        rows = db.execute(f"SELECT * FROM {table} WHERE session_id = ? AND t <= ? ORDER BY id",  # noqa: S608
                          (session_id, ended_t)).fetchall()  # fmt: skip
    return [{k: row[k] for k in row.keys() if k not in ("id", "session_id")} for row in rows]  # noqa: SIM118


# --- sessions -------------------------------------------------------------------------------


def test_sessions_lists_each_session_with_its_summary(clinic, capsys):
    """One line per session: times in local time, alarms by priority, readiness, gaps."""
    code, out, err = run(capsys, "sessions", "--config", str(config_for(clinic)))
    assert (code, err) == (0, "")
    header, *lines = out.splitlines()
    assert header.split() == ["session", "room", "start", "route", "dose", "end", "duration",
                              "alarms", "h/m/l", "ready", "gaps"]  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines}
    assert list(rows) == [OLD, OPEN, MAIN]  # oldest first
    assert rows[MAIN] == [MAIN, "room-1", "2026-03-02", "10:00", "iv", "10:10", "12:45", "2:45",
                          "1/1/0", "yes", "1", "(0:02:01)"]  # fmt: skip
    assert rows[OLD] == [OLD, "room-2", "2026-02-10", "15:00", "im", "—", "15:20", "0:20",
                         "0/0/0", "—", "—"]  # fmt: skip
    assert rows[OPEN][5:7] == ["—", "open"]


def test_sessions_filters_by_date_and_room(clinic, capsys):
    config = str(config_for(clinic))
    _, out, _ = run(capsys, "sessions", "--config", config, "--since", "2026-03-01")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [MAIN]
    _, out, _ = run(capsys, "sessions", "--config", config, "--room", "room-2")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [OLD]
    # A date-time with an offset is an instant: OPEN started 08:00 UTC.
    _, out, _ = run(capsys, "sessions", "--config", config, "--since", "2026-02-20T08:00:00+00:00")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [OPEN, MAIN]
    code, out, _ = run(capsys, "sessions", "--config", config, "--room", "room-9")
    assert (code, out) == (0, f"no sessions in {clinic} that match\n")


def test_a_demo_session_says_its_speed(record, capsys, tmp_path):
    """The recorder's `speed` column: a demo's session says it was one."""
    with connect(record) as db:
        db.execute("UPDATE sessions SET speed = 60 WHERE id = ?", (MAIN,))
    config = str(config_for(record))
    _, out, _ = run(capsys, "sessions", "--config", config)
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines[MAIN].endswith("demo at 60×")  # noqa: RUF001
    assert "demo" not in lines[OLD]
    report = tmp_path / "r.html"
    assert run(capsys, "report", MAIN, "--config", config, "--out", str(report))[0] == 0
    assert "demo at 60×" in report.read_text()  # noqa: RUF001


@pytest.mark.parametrize(("option", "value"), [("--since", "yesterday"), ("--since", "2026-13-01")])
def test_a_bad_date_is_one_line_and_exit_2(clinic, capsys, option, value):
    code, out, err = run(capsys, "sessions", "--config", str(config_for(clinic)), option, value)
    assert (code, out) == (2, "")
    assert err == f"{option}: not a date (YYYY-MM-DD) or an ISO date-time: {value!r}\n"


# --- unusable records -----------------------------------------------------------------------


def _missing(path: Path) -> None:
    path.unlink()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def _other_database(path: Path) -> None:
    path.unlink()
    with connect(path) as db:
        db.execute("CREATE TABLE patients (name TEXT)")


def _newer(path: Path) -> None:
    with connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION + 1),))  # fmt: skip


@pytest.mark.parametrize(("spoil", "expected"), [
    (_missing, "no record here; set [records] path"),
    (_garbage, "not a readable SQLite database (file is not a database)"),
    (_other_database, "not a sessiond record"),
    (_newer, f"written by a newer sessiond (schema {SCHEMA_VERSION + 1}, this one reads up to"),
], ids=["missing", "corrupt", "not-sessiond", "newer"])  # fmt: skip
@pytest.mark.parametrize("command", [
    ["sessions"], ["export", MAIN, "--format", "json"], ["report", MAIN],
    ["purge", "--before", "2026-03-01"],
], ids=["sessions", "export", "report", "purge"])  # fmt: skip
def test_an_unusable_record_is_one_line_and_exit_2(record, capsys, spoil, expected, command):
    """Never a traceback, never a file created or changed: one line naming the file."""
    config = config_for(record)
    spoil(record)
    before = record.read_bytes() if record.exists() else None
    code, out, err = run(capsys, *command, "--config", str(config))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith(f"sessiond {command[0]}: {record}: ")
    assert expected in err
    assert (record.read_bytes() if record.exists() else None) == before


@pytest.mark.parametrize("ref", ["0000", "7f3"])  # 7f3: too short to stand for MAIN
def test_an_unknown_session_is_one_line_and_exit_2(clinic, capsys, ref):
    code, out, err = run(capsys, "report", ref, "--config", str(config_for(clinic)))
    assert (code, out) == (2, "")
    assert err == f"sessiond report: {clinic}: no session {ref!r}; `sessiond sessions` lists them\n"


# --- export: CSV and JSON round-trip ------------------------------------------------------------


def test_json_export_round_trips(clinic, capsys, tmp_path):
    """Re-read, the JSON equals the database: the session row and every row of each table."""
    out = tmp_path / "s.json"
    code, stdout, err = run(capsys, "export", MAIN[:6], "--format", "json", "--out", str(out),
                            "--config", str(config_for(clinic)))  # fmt: skip
    assert (code, stdout, err) == (0, "", "")
    data = json.loads(out.read_text(encoding="utf-8"))
    with connect(clinic) as db:
        db.row_factory = sqlite3.Row
        session = dict(db.execute("SELECT * FROM sessions WHERE id = ?", (MAIN,)).fetchone())
        after_end = db.execute("SELECT count(*) FROM readings WHERE session_id = ? AND t > ?",
                               (MAIN, session["ended_t"])).fetchone()[0]  # fmt: skip
        no_session = db.execute("SELECT count(*) FROM readings WHERE session_id IS NULL AND"
                                " t > ?", (session["ended_t"],)).fetchone()[0]  # fmt: skip
    assert data["session"] == session
    assert data["schema_version"] == SCHEMA_VERSION
    for table in TABLES:
        expected = db_rows(clinic, table)
        for row in expected:
            if table == "actions":
                row["detail"] = json.loads(row["detail"])
            if table == "events":
                row["data"] = json.loads(row["data"])
        assert data[table] == expected, table
    # The devices kept sending after the end: recorded under no session, never this one.
    assert (after_end, no_session > 0) == (0, True)
    assert data["summary"] == {
        "alarms": {"low": 0, "medium": 1, "high": 1},
        "ready_at_end": True,
        "gaps": [{"since_t": 5999.0, "t": 6120.0, "seconds": 121.0}],
        "closed_by_sessiond": None,
    }
    notes = [a["detail"]["text"] for a in data["actions"] if a["action"] == "note"]
    assert notes == [NOTE]


def test_csv_export_round_trips(clinic, capsys):
    """Re-read, each CSV row equals its database row, cell for cell, in time order."""
    code, out, err = run(capsys, "export", MAIN, "--format", "csv", "--config",
                         str(config_for(clinic)))  # fmt: skip
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(out.splitlines(keepends=True)))
    first, rest = rows[0], rows[1:]
    assert first["record"] == "session"
    assert first["session_id"] == MAIN
    assert first["started_wall"] == MAIN_START.isoformat()
    times = [float(row["t"]) for row in rest]
    assert times == sorted(times)
    for table in TABLES:
        expected = db_rows(clinic, table)
        got = [row for row in rest if row["record"] == table]
        assert len(got) == len(expected), table
        # Within a table the CSV keeps record order for equal times.
        expected.sort(key=lambda row: row["t"])
        for csv_row, db_row in zip(got, expected, strict=True):
            assert {k: csv_row[k] for k in db_row} == {
                k: "" if v is None else str(v) for k, v in db_row.items()
            }
            assert float(csv_row["elapsed_s"]) == pytest.approx(db_row["t"])  # started at 0


def test_export_to_stdout_in_a_pipe_shows_no_progress(clinic):
    result = subprocess.run(
        [sys.executable, "-m", "sessiond", "export", MAIN, "--format", "json", "--config",
         str(config_for(clinic))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["session"]["id"] == MAIN


def test_a_long_export_shows_progress_on_a_terminal(clinic, tmp_path):
    """stderr on a terminal: a `\\r`-updated line up to 100 %, cleared at the end."""
    master, slave = pty.openpty()
    out = tmp_path / "s.csv"
    with subprocess.Popen(
        [sys.executable, "-m", "sessiond", "export", MAIN, "--format", "csv", "--out", str(out),
         "--config", str(config_for(clinic))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
    ) as proc:  # fmt: skip
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert proc.wait(timeout=60) == 0
    os.close(master)
    text = shown.decode()
    assert f"\rexport {MAIN}: 100 %" in text
    assert text.endswith("\r\x1b[K")
    assert out.read_text().startswith("record,elapsed_s,t,wall,")


# --- FHIR -----------------------------------------------------------------------------------


def fhir_export(capsys, clinic: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "export", MAIN, "--format", "fhir", "--config",
                         str(config_for(clinic)), *extra)  # fmt: skip
    assert (code, err) == (0, ""), err
    bundle: dict[str, Any] = json.loads(out)
    return bundle


def codes(resource: dict[str, Any]) -> list[str]:
    return [coding["code"] for coding in resource["code"].get("coding", [])]


def test_fhir_bundle_validates_with_the_r4_models(clinic, capsys):
    """A transaction Bundle the FHIR library's R4 (4.3 R4B) models accept, resource by resource."""
    data = fhir_export(capsys, clinic)
    bundle = Bundle.model_validate(data)
    assert bundle.type == "transaction"
    for entry in data["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == resource["resourceType"]
        system, value = resource["identifier"][0]["system"], resource["identifier"][0]["value"]
        assert entry["request"]["ifNoneExist"] == f"identifier={system}|{value}"
    # The models are strict: the same bundle with one broken Observation is refused.
    broken = json.loads(json.dumps(data))
    observation = next(e for e in broken["entry"] if e["resource"]["resourceType"] == "Observation")
    observation["resource"]["effectiveDateTime"] = "2 March 2026, 09:00"
    with pytest.raises(ValidationError):
        Bundle.model_validate(broken)


def test_fhir_observations_are_loinc_coded_with_ucum_units(clinic, capsys):
    data = fhir_export(capsys, clinic)
    resources = {e["fullUrl"]: e["resource"] for e in data["entry"]}
    kinds = [r["resourceType"] for r in resources.values()]
    assert kinds.count("Encounter") == kinds.count("Procedure") == 1
    assert kinds.count("Device") == 2
    (encounter_url,) = [url for url, r in resources.items() if r["resourceType"] == "Encounter"]
    encounter = resources[encounter_url]
    assert encounter["identifier"][0]["value"] == MAIN
    assert encounter["period"] == {"start": "2026-03-02T09:00:00+00:00",
                                   "end": "2026-03-02T11:45:00+00:00"}  # fmt: skip
    observations = [r for r in resources.values() if r["resourceType"] == "Observation"]
    for obs in observations:
        assert obs["subject"] == {"reference": "Patient/unmapped"}
        assert obs["encounter"] == {"reference": encounter_url}
        assert resources[obs["device"]["reference"]]["resourceType"] == "Device"
        assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
        assert datetime.fromisoformat(obs["effectiveDateTime"]).tzinfo is not None
    spo2 = [o for o in observations if "59408-5" in codes(o)]
    rate = [o for o in observations if codes(o)[0] == "8867-4"]
    bp = [o for o in observations if codes(o) == ["85354-9"]]
    assert len(spo2) + len(rate) + len(bp) == len(observations)
    assert {(o["valueQuantity"]["system"], o["valueQuantity"]["code"]) for o in spo2} == {
        ("http://unitsofmeasure.org", "%")}  # fmt: skip
    assert {o["valueQuantity"]["code"] for o in rate} == {"/min"}
    # Every valid BP reading: a panel with SYS, DIA and mean in mm[Hg], at the reading's time.
    bp_rows = [r for r in db_rows(clinic, "readings") if r["sys"] is not None]
    assert [o["effectiveDateTime"] for o in bp] == [r["wall"] for r in bp_rows]
    first = bp[0]["component"]
    assert [(codes(c)[0], c["valueQuantity"]["value"], c["valueQuantity"]["code"]) for c in first] \
        == [("8480-6", bp_rows[0]["sys"], "mm[Hg]"), ("8462-4", bp_rows[0]["dia"], "mm[Hg]"),
            ("8478-0", bp_rows[0]["map"], "mm[Hg]")]  # fmt: skip
    # Oximetry: one reading per minute of the session with a valid value (the gap has none).
    minutes = {int(r["t"] // 60) for r in db_rows(clinic, "readings")
               if r["spo2"] is not None and "sensor_off" not in r["flags"]}  # fmt: skip
    assert len(spo2) == len(minutes)
    assert 160 <= len(spo2) <= 166


def test_fhir_every_and_patient_ref_options(clinic, capsys):
    data = fhir_export(capsys, clinic, "--fhir-every", "0", "--patient-ref", "Patient/p-123")
    observations = [e["resource"] for e in data["entry"]
                    if e["resource"]["resourceType"] == "Observation"]  # fmt: skip
    valid = [r for r in db_rows(clinic, "readings")
             if r["spo2"] is not None and "sensor_off" not in r["flags"]]  # fmt: skip
    assert sum("59408-5" in codes(o) for o in observations) == len(valid)
    subjects = {json.dumps(e["resource"].get("subject")) for e in data["entry"]
                if e["resource"]["resourceType"] != "Device"}  # fmt: skip
    assert subjects == {'{"reference": "Patient/p-123"}'}
    # Note texts stay in the clinic's record; the EHR bundle carries none.
    assert "Chin lift" not in json.dumps(data)
    code, out, err = run(capsys, "export", MAIN, "--format", "fhir", "--patient-ref", "Mrs Smith",
                         "--config", str(config_for(clinic)))  # fmt: skip
    assert (code, out) == (2, "")
    assert err == "--patient-ref: not a FHIR reference such as Patient/123: 'Mrs Smith'\n"


# --- purge ----------------------------------------------------------------------------------


def counts(path: Path) -> dict[str, int]:
    with connect(path) as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in (*TABLES, "sessions")}  # fmt: skip


def test_purge_keeps_what_it_must(record, capsys, tmp_path):
    """Ended before the cutoff: gone, whole. Open, or ended after: kept, row for row."""
    config = str(config_for(record))
    main_before = json.loads(_export(capsys, config, MAIN))
    open_before = {t: db_rows_open(record, t) for t in TABLES}
    rows_before = counts(record)

    code, out, _ = run(capsys, "purge", "--before", "2026-03-01", "--dry-run", "--config", config)
    assert code == 0
    assert out.startswith(f"{record}: would delete 1 session that ended before 2026-03-01 00:00"
                          " (dry run: nothing deleted)\n")  # fmt: skip
    assert f"  {OLD}  room-2  2026-02-10 15:00 to 2026-02-10 15:20\n" in out
    assert f"  kept, still open: {OPEN}\n" in out
    assert counts(record) == rows_before

    code, out, _ = run(capsys, "purge", "--before", "2026-03-01", "--config", config)
    assert code == 0
    assert out.startswith(f"{record}: deleted 1 session that ended before 2026-03-01 00:00\n")
    with connect(record) as db:
        assert {row[0] for row in db.execute("SELECT id FROM sessions")} == {MAIN, OPEN}
        for table in TABLES:
            assert db.execute(f"SELECT count(*) FROM {table} WHERE session_id = ?",  # noqa: S608
                              (OLD,)).fetchone()[0] == 0  # fmt: skip
        # Readings of no session from before the cutoff (before OLD and OPEN) are gone too.
        orphans = "SELECT count(*) FROM readings WHERE session_id IS NULL AND wall < ?"
        assert db.execute(orphans, ("2026-03-01",)).fetchone()[0] == 0
    assert json.loads(_export(capsys, config, MAIN)) == main_before
    assert {t: db_rows_open(record, t) for t in TABLES} == open_before


def db_rows_open(path: Path, table: str) -> list[tuple[Any, ...]]:
    with connect(path) as db:
        sql = f"SELECT * FROM {table} WHERE session_id = ? ORDER BY id"  # noqa: S608
        return db.execute(sql, (OPEN,)).fetchall()


def _export(capsys, config: str, session: str) -> str:
    code, out, err = run(capsys, "export", session, "--format", "json", "--config", config)
    assert (code, err) == (0, "")
    return out


def test_purge_uses_keep_days_and_refuses_without_a_cutoff(record, capsys):
    config = config_for(record)
    code, out, err = run(capsys, "purge", "--config", str(config))
    assert (code, out) == (2, "")
    assert err == "--before: required unless [records] keep_days is set (0 keeps every record)\n"
    code, _, err = run(capsys, "purge", "--before", "2999-01-01", "--config", str(config))
    assert code == 2
    assert "is in the future" in err
    # A cutoff a day or so before MAIN: only OLD ended before it (OPEN never ended).
    keep = (datetime.now(UTC) - MAIN_START).days + 1
    config.write_text(config.read_text() + f"keep_days = {keep}\n")
    code, out, _ = run(capsys, "purge", "--config", str(config))
    assert code == 0
    assert "deleted 1 session that ended before" in out
    with connect(record) as db:
        assert {row[0] for row in db.execute("SELECT id FROM sessions")} == {MAIN, OPEN}
    assert OPEN_START < MAIN_START  # OPEN is older than the cutoff and still kept


# --- report ---------------------------------------------------------------------------------


def report_text(capsys, clinic: Path) -> str:
    code, out, err = run(capsys, "report", MAIN, "--config", str(config_for(clinic)))
    assert (code, err) == (0, "")
    return out


def test_report_is_one_self_contained_file(clinic, capsys):
    """No script, nothing fetched, record text escaped, the charts inline as SVG."""
    text = report_text(capsys, clinic)
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'' in text
    for attribute in ("src=", "href=", "@import", "url(http"):
        assert attribute not in text
    assert text.count("<svg ") == 4
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text
    assert "<b>not bold</b>" not in text
    # The manual entry and the nurse's pre-dose checklist, with the item left unconfirmed.
    assert "side effect: effect nausea, severity mild" in text
    assert "<td>predose</td>" in text
    assert "<td>baseline_bp</td>" in text


# --- report in a real browser ---------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
#: Each chart made taller than half a page: printed one after another, some would straddle a
#: page break unless the page breaks avoid them.
TALL_CHARTS = "figure.chart svg { height: 190mm !important; }"
BREAKABLE = "figure.chart { break-inside: auto !important; page-break-inside: auto !important; }"


def figure_pages(pdf: bytes) -> dict[int, tuple[int, int]]:
    """For each figure, the pages of its caption (top) and of its key (bottom), 0-based."""
    pages = [" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf)).pages]
    found: dict[int, tuple[int, int]] = {}
    for n in range(1, 5):
        top = [i for i, text in enumerate(pages) if f"Figure {n}." in text]
        bottom = [i for i, text in enumerate(pages) if f"Figure {n} key:" in text]
        assert len(top) == len(bottom) == 1, (n, top, bottom)
        found[n] = (top[0], bottom[0])
    return found


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")
async def test_report_renders_and_prints_with_the_rems_fields(clinic, tmp_path):
    """In Chromium: the REMS fields show the session's values; the PDF cuts no chart."""
    out = tmp_path / "report.html"
    assert main(["report", MAIN, "--config", str(config_for(clinic)), "--out", str(out)]) == 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = await browser.new_page()
            requests: list[str] = []
            problems: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(out.as_uri())
            assert requests == [out.as_uri()]  # nothing else is fetched
            assert problems == []

            rems = page.locator("section.rems")
            await expect(rems).to_be_visible()
            await expect(page.locator("#rems-date td")).to_have_text("2026-03-02")
            await expect(page.locator("#rems-dose td")).to_have_text("10:10:00 (+0:00)")
            await expect(page.locator("#rems-bp-before td")).to_have_text(
                "122/78 mmHg at 10:06:10 (-3:50)"
            )
            await expect(page.locator("#rems-bp-40 td")).to_have_text(
                "138/88 mmHg at 10:50:35 (+40:35)"
            )
            await expect(page.locator("#rems-observation td")).to_contain_text("2:35 (h:mm) after")
            await expect(page.locator("#rems-ready td")).to_have_text(
                "Yes: discharge criteria met from 12:10:00 (+120:00) and still at the end"
            )
            await expect(page.locator("#rems-resp td")).to_contain_text("lowest SpO2 83 %")
            await expect(page.get_by_text(NOTE)).to_be_visible()
            for n in range(1, 5):
                await expect(page.locator(f"#figure-{n} svg")).to_be_visible()

            pdf = await page.pdf(format="A4", print_background=True)
            assert pdf.startswith(b"%PDF-")
            pages = figure_pages(pdf)
            assert all(top == bottom for top, bottom in pages.values()), pages

            # Under stress the rule still holds, and without it the check sees the cut.
            await page.add_style_tag(content=TALL_CHARTS)
            pages = figure_pages(await page.pdf(format="A4"))
            assert all(top == bottom for top, bottom in pages.values()), pages
            await page.add_style_tag(content=BREAKABLE)
            pages = figure_pages(await page.pdf(format="A4"))
            assert any(top != bottom for top, bottom in pages.values()), pages
        finally:
            await browser.close()
