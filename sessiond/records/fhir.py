"""One session as a FHIR R4 transaction Bundle for an EHR (DESIGN §10). Plain JSON.

The Bundle holds an Encounter for the session, a Procedure for the dose (when one was
marked), a Device per monitor, and vital-signs Observations (LOINC codes, UCUM units, the
reading's recorded time as `effectiveDateTime`, the device that measured it):

- oximetry: SpO2 (59408-5, with 2708-6 for the FHIR oxygen-saturation profile) and pulse
  rate (8867-4, with 8889-8 "by pulse oximetry"), one reading per `every_s` window from the
  session start: the first valid reading in each window, as a nurse charting at that
  interval would (every reading with `every_s` 0; the CSV and JSON exports always have all);
- every valid BP reading: a blood-pressure panel (85354-9) with systolic (8480-6), diastolic
  (8462-4) and mean (8478-0) components, and the module's pulse rate (8867-4).

The record names no patient. Every resource refers to the patient as `patient_ref`, by
default `Patient/unmapped`: the clinic's integration maps it (the Encounter's identifier is
the session id), or the exporter is given the patient's reference. Each resource carries a
stable identifier and a conditional create (`ifNoneExist`), so sending a bundle twice does not
duplicate it.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from sessiond.model import INVALID_FOR_ALARMS

if TYPE_CHECKING:
    from datetime import datetime

    from sessiond.records.sessions import SessionRecord

#: The patient reference when none is given: a placeholder the clinic maps, never a name.
DEFAULT_PATIENT_REF = "Patient/unmapped"
#: Oximetry is sampled once per this many seconds by default (BP: every reading).
DEFAULT_EVERY_S = 60.0
#: Identifier systems of what sessiond names (sessions, devices, observations).
SYSTEM = "urn:sessiond"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ],
    "text": "Vital Signs",
}
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
_INVALID = frozenset(flag.name.lower() for flag in INVALID_FOR_ALARMS if flag.name is not None)
#: `Type/id` (a FHIR id) or an absolute `urn:uuid:`.
_REFERENCE = re.compile(
    r"^(?:[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}|urn:uuid:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12})$"
)
_NAMESPACE = uuid.UUID("0e4f6a52-93c4-4d8e-9a57-2f4f1c1d5e0b")


def _loinc(code: str, display: str) -> dict[str, str]:
    return {"system": LOINC, "code": code, "display": display}


SPO2 = [
    _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    _loinc("2708-6", "Oxygen saturation in Arterial blood"),
]
HEART_RATE = [_loinc("8867-4", "Heart rate")]
PULSE_OXIMETRY_RATE = [*HEART_RATE, _loinc("8889-8", "Heart rate by Pulse oximetry")]
BP_PANEL = [_loinc("85354-9", "Blood pressure panel with all children optional")]
SYSTOLIC = [_loinc("8480-6", "Systolic blood pressure")]
DIASTOLIC = [_loinc("8462-4", "Diastolic blood pressure")]
MEAN_BP = [_loinc("8478-0", "Mean blood pressure")]


def valid_patient_ref(ref: str) -> bool:
    """Whether `ref` is a literal reference (`Patient/123`) or a `urn:uuid:`."""
    return _REFERENCE.match(ref) is not None


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


PERCENT = ("%", "%")
PER_MINUTE = ("beats/minute", "/min")
MMHG = ("mmHg", "mm[Hg]")


class _Builder:
    def __init__(self, record: SessionRecord, *, patient_ref: str) -> None:
        self.record = record
        self.session = record.session
        self.subject = {"reference": patient_ref}
        self.entries: list[dict[str, Any]] = []
        self.encounter_url = self._url("encounter")
        self.devices: dict[str, str] = {}

    def _url(self, key: str) -> str:
        return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{self.session.id}/{key}')}"

    def add(self, key: str, resource: dict[str, Any], *, system: str, value: str) -> str:
        url = self._url(key)
        resource["identifier"] = [{"system": system, "value": value}]
        self.entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": f"identifier={system}|{value}",
                },
            }
        )
        return url

    def encounter(self) -> None:
        s = self.session
        period = {"start": s.started_wall.isoformat()}
        if s.ended_wall is not None:
            period["end"] = s.ended_wall.isoformat()
        resource = {
            "resourceType": "Encounter",
            "status": "in-progress" if s.ended_wall is None else "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "type": [{"text": "Ketamine therapy session with monitoring"}],
            "subject": self.subject,
            "period": period,
        }
        url = self.add("encounter", resource, system=f"{SYSTEM}:session", value=s.id)
        assert url == self.encounter_url

    def procedure(self) -> None:
        s = self.session
        if s.dose_wall is None:
            return
        performed = {"start": s.dose_wall.isoformat()}
        if s.ended_wall is not None:
            performed["end"] = s.ended_wall.isoformat()
        resource = {
            "resourceType": "Procedure",
            "status": "in-progress" if s.ended_wall is None else "completed",
            "code": {"text": f"Ketamine administration ({s.route}) with monitoring"},
            "subject": self.subject,
            "encounter": {"reference": self.encounter_url},
            "performedPeriod": performed,
            "note": [{"text": f"Dose marked at {s.dose_wall.isoformat()}; route {s.route}."}],
        }
        self.add("procedure", resource, system=f"{SYSTEM}:session", value=f"{s.id}/dose")

    def device(self, name: str, kind: str) -> str:
        url = self.devices.get(name)
        if url is None:
            resource = {
                "resourceType": "Device",
                "deviceName": [{"name": name, "type": "user-friendly-name"}],
                "type": {"text": kind},
            }
            url = self.add(
                f"device/{name}",
                resource,
                system=f"{SYSTEM}:device",
                value=f"{self.session.room}/{name}",
            )
            self.devices[name] = url
        return url

    def observation(
        self,
        row: dict[str, Any],
        *,
        what: str,
        profile: str,
        coding: list[dict[str, str]],
        device: str,
        value: dict[str, Any] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> None:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "meta": {"profile": [_PROFILE + profile]},
            "status": "final",
            "category": [_CATEGORY],
            "code": {"coding": coding, "text": coding[0]["display"]},
            "subject": self.subject,
            "encounter": {"reference": self.encounter_url},
            "effectiveDateTime": row["wall"],
            "device": {"reference": device},
        }
        if value is not None:
            resource["valueQuantity"] = value
        if components is not None:
            resource["component"] = components
        key = f"{row['device']}/{row['t']:.3f}/{what}"
        self.add(
            f"observation/{key}",
            resource,
            system=f"{SYSTEM}:observation",
            value=f"{self.session.id}/{key}",
        )


def bundle(
    record: SessionRecord,
    *,
    now: datetime,
    patient_ref: str = DEFAULT_PATIENT_REF,
    every_s: float = DEFAULT_EVERY_S,
) -> dict[str, Any]:
    """The session as a FHIR R4 `transaction` Bundle (a JSON-ready dict)."""
    if not valid_patient_ref(patient_ref):
        msg = f"not a FHIR reference such as Patient/123: {patient_ref!r}"
        raise ValueError(msg)
    b = _Builder(record, patient_ref=patient_ref)
    b.encounter()
    b.procedure()
    windows: set[tuple[str, int]] = set()
    for row in record.tables["readings"]:
        if _INVALID.intersection((row["flags"] or "").split(",")):
            continue
        if row["sys"] is not None and row["dia"] is not None:
            _bp(b, row)
            continue
        if row["spo2"] is None and row["pr"] is None:
            continue
        if every_s > 0:
            window = (row["device"], int((row["t"] - b.session.started_t) // every_s))
            if window in windows:
                continue
            windows.add(window)
        _oximetry(b, row)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": now.isoformat(timespec="seconds"),
        "entry": b.entries,
    }


def _oximetry(b: _Builder, row: dict[str, Any]) -> None:
    device = b.device(row["device"], "Pulse oximeter")
    if row["spo2"] is not None:
        b.observation(
            row,
            what="spo2",
            profile="oxygensat",
            coding=SPO2,
            device=device,
            value=_quantity(row["spo2"], *PERCENT),
        )
    if row["pr"] is not None:
        b.observation(
            row,
            what="pr",
            profile="heartrate",
            coding=PULSE_OXIMETRY_RATE,
            device=device,
            value=_quantity(row["pr"], *PER_MINUTE),
        )


def _bp(b: _Builder, row: dict[str, Any]) -> None:
    device = b.device(row["device"], "Non-invasive blood pressure monitor")
    parts = [(SYSTOLIC, row["sys"]), (DIASTOLIC, row["dia"]), (MEAN_BP, row.get("map"))]
    components = [
        {
            "code": {"coding": coding, "text": coding[0]["display"]},
            "valueQuantity": _quantity(value, *MMHG),
        }
        for coding, value in parts
        if value is not None
    ]
    b.observation(
        row, what="bp", profile="bp", coding=BP_PANEL, device=device, components=components
    )
    if row.get("pr") is not None:
        b.observation(
            row,
            what="pr",
            profile="heartrate",
            coding=HEART_RATE,
            device=device,
            value=_quantity(row["pr"], *PER_MINUTE),
        )
