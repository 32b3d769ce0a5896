"""Device players: one simulated bedside device on one port, in its own protocol.

Streaming oximeters (Masimo 1 line/s, Nonin DF7 3 packets/s, Contec V7 60 packets/s in
1/3-s chunks) render their data in bulk for a range of chunks and write everything due in
one write, so a late wake-up catches up in one go and 75 Hz costs 3 writes a second. The
NIBP module speaks only when spoken to, and says `K` when a measurement ends.

Every chunk is scheduled on absolute session time (`LoopClock.sleep_until`), so a run at
60x covers an hour a minute without drift. Bytes go out through `Emit([(t, data), ...])`,
one port write for all the pieces, which the simulator wires to the port and to its
`on_bytes` report; each `t` is when the device sent that piece (its scheduled time).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sessiond.errors import ConfigError
from sessiond.sim import contec, nonin
from sessiond.sim.masimo import (
    EXC_INTERFERENCE,
    EXC_LOW_PERFUSION,
    EXC_LOW_SIGNAL_IQ,
    EXC_SENSOR_OFF,
    EXC_SET,
    masimo_line,
)
from sessiond.sim.oximetry import (
    LOW_PERFUSION_PI,
    LOW_SIGNAL_PI,
    MARGINAL_PERFUSION_PI,
    PlethWave,
)
from sessiond.sim.scenario import (
    NIBP_PROTOCOLS,
    OXIMETER_PROTOCOLS,
    PORT_NAME,
    SIM_PROTOCOLS,
    port_key,
)
from sessiond.sim.suntech import BpTruth, SuntechModule

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from sessiond.clock import LoopClock
    from sessiond.sim.oximetry import OximeterTrack
    from sessiond.sim.physiology import Vitals
    from sessiond.sim.scenario import BpFailure, Scenario

logger = logging.getLogger(__name__)

#: Sends device bytes, each piece with the session time the device sent it, in one write.
Emit = Callable[[list[tuple[float, bytes]]], None]

#: The most chunks one write carries when catching up (then the loop yields and goes on).
MAX_CATCHUP_S = 5
#: A streaming device this far behind its schedule (real seconds) says so (once).
BEHIND_REAL_S = 1.0
#: The demo's least real time between two writes of one streaming device: at 1x and up to
#: ~50x a chunk is due less often anyway; at 600x a Masimo's 600 lines a second go in 100.
WRITE_GAP_REAL_S = 0.01
#: Nonin DF7 pleth: the 16-bit sample of the mean light level, and of a resting pulse height.
NONIN_PLETH_MID = 32768
NONIN_PLETH_SCALE = 8000
#: Contec V7 pleth (7 bits, auto-scaled by the device for its display).
CONTEC_PLETH_MID = 64
CONTEC_PLETH_SCALE = 45
#: The oximeter's local clock at session time 0 (naive: a device clock has no zone).
DEFAULT_DEVICE_START = datetime(2026, 1, 5, 9, 0, 0)  # noqa: DTZ001
DEFAULT_SERIAL = "0000012345"
#: BP measurement scatter (SD), mmHg and bpm: a cuff reading differs from the true value.
NIBP_SCATTER_SYS = 3.0
NIBP_SCATTER_DIA = 2.0
NIBP_SCATTER_PR = 1.0
#: Scenario random streams: line noise, and the NIBP scatter (one sub-stream per measurement).
GARBAGE_STREAM = 1
NIBP_STREAM = 5


class Session:
    """What every player of one simulation shares: the scenario and the patient model."""

    def __init__(
        self,
        *,
        scenario: Scenario,
        vitals: Vitals,
        track: OximeterTrack,
        garbage: Mapping[str, npt.NDArray[np.int64]],
        device_start: datetime = DEFAULT_DEVICE_START,
        serial: str = DEFAULT_SERIAL,
    ) -> None:
        self.scenario = scenario
        self.vitals = vitals
        self.track = track
        #: Junk bytes per session second, by port.
        self.garbage = garbage
        self.device_start = device_start
        self.serial = serial
        #: The session second of element 0 of `vitals` and `track` (a demo that plays on
        #: indefinitely moves its arrays along; 0 otherwise).
        self.origin = 0

    def index(self, k: int) -> int:
        """The element of `vitals` and `track` for session second `k` (clamped to them)."""
        return min(max(0, k - self.origin), len(self.track) - 1)

    def indices(self, seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """`index` of each session second in `seconds`."""
        out: npt.NDArray[np.int64] = np.clip(seconds - self.origin, 0, len(self.track) - 1)
        return out


class DevicePlayer:
    """One device on one port. Subclasses set `protocol` and implement `run`."""

    protocol: ClassVar[str]

    def __init__(self, *, name: str, session: Session, emit: Emit) -> None:
        self.name = name
        self.session = session
        self._emit = emit
        self._garbage = session.garbage.get(name)
        self._junk = session.scenario.rng(GARBAGE_STREAM, port_key(name))

    async def run(self, clock: LoopClock, end_s: float) -> None:
        """Play until session time `end_s` (`math.inf`: until cancelled)."""
        raise NotImplementedError

    def replanned(self) -> None:
        """The session's arrays were replaced (a demo's plan changed): drop what was derived."""

    def receive(self, data: bytes, t: float) -> None:
        """Bytes the host sent, arriving at `t` (most oximeters ignore them)."""

    def unplugged(self) -> None:
        """The cable was pulled (the device loses the host's power and settings)."""

    def junk(self, k: int) -> bytes:
        """The line noise due before second `k`'s data (b"" for none)."""
        if self._garbage is None or k >= len(self._garbage) or not self._garbage[k]:
            return b""
        return self._junk.integers(0, 256, int(self._garbage[k]), np.uint8).tobytes()


class StreamingPlayer(DevicePlayer):
    """An oximeter that sends on its own, `chunks_per_s` chunks a second."""

    chunks_per_s: ClassVar[int]

    def __init__(self, *, name: str, session: Session, emit: Emit) -> None:
        super().__init__(name=name, session=session, emit=emit)
        #: The least real time between two writes (0: each chunk when it falls due).
        self.write_gap_real_s = 0.0
        #: Said that the device falls behind its schedule (and not yet that it caught up);
        #: None while it first catches up from session time 0 (a resumed demo's clock).
        self._behind: bool | None = None

    def render(self, first: int, stop: int) -> list[bytes]:
        """The bytes of chunks `first` to `stop - 1`, one item per chunk."""
        raise NotImplementedError

    def sending(self, t: float) -> bool:  # noqa: ARG002 (a V7 Contec overrides it)
        """Whether the device sends at session time `t` (a V7 Contec only after a start)."""
        return True

    async def run(self, clock: LoopClock, end_s: float) -> None:
        cps = self.chunks_per_s
        total = end_s * cps
        # With a write gap (the demo) many chunks that fall due at high speed go in one write,
        # at most one write per gap of real time, so the pty and the reader see a few large
        # writes instead of a flood of tiny ones (`sessiond sim` writes each chunk on time).
        gap_s = clock.session_seconds(self.write_gap_real_s)
        catchup = math.ceil(max(MAX_CATCHUP_S, 2 * gap_s) * cps)
        next_write = 0.0
        c = 0
        while c < total:
            # Absolute schedule: a late wake-up returns at once and catches up below.
            await clock.sleep_until(max(c / cps, next_write))
            now = clock.now()
            self._keeping_up(clock, behind_s=now - c / cps)
            due = math.floor(now * cps) + 1
            stop = int(min(total, max(c + 1, due), c + catchup))
            sent = [i for i in range(c, stop) if self.sending(i / cps)]
            out: list[tuple[float, bytes]] = []
            if sent:
                rendered = self.render(sent[0], sent[-1] + 1)
                for i in sent:
                    t = i / cps
                    if i % cps == 0:
                        junk = self.junk(i // cps)
                        if junk:
                            out.append((t, junk))
                    out.append((t, rendered[i - sent[0]]))
            if out:
                self._emit(out)
                next_write = now + gap_s
            c = stop

    def _keeping_up(self, clock: LoopClock, *, behind_s: float) -> None:
        """Say once when the device falls more than `BEHIND_REAL_S` of real time behind its
        schedule (the machine is too busy for the clock's speed), and once when it is back."""
        behind = behind_s / clock.speed
        if self._behind is None:
            if behind < BEHIND_REAL_S / 5:
                self._behind = False
        elif not self._behind and behind > BEHIND_REAL_S:
            self._behind = True
            logger.warning(
                "%s: the simulated device is %.1f s behind real time at %gx: this machine is"
                " too busy for that speed, its data and alarms come late (try a lower --speed)",
                self.name, behind, clock.speed,
            )  # fmt: skip
        elif self._behind and behind < BEHIND_REAL_S / 5:
            self._behind = False
            logger.info("%s: the simulated device keeps up again", self.name)


class MasimoPlayer(StreamingPlayer):
    """A Masimo Rad-8 in "ASCII 1": one line a second."""

    protocol: ClassVar[str] = "masimo-ascii1"
    chunks_per_s: ClassVar[int] = 1

    def line(self, k: int) -> bytes:
        """The line for session second `k`."""
        s = self.session
        track = s.track
        device_time = s.device_start + timedelta(seconds=k)
        i = s.index(k)
        if track.sensor_off[i]:
            # Sensor off replaces the SET bit in the EXC field and blanks every value.
            return masimo_line(
                device_time=device_time,
                spo2=None,
                pr=None,
                pi=None,
                exc=EXC_SENSOR_OFF,
                serial=s.serial,
            )
        pi = float(track.pi[i])
        exc = EXC_SET
        if track.artifact[i]:
            exc |= EXC_INTERFERENCE
        if pi < LOW_PERFUSION_PI:
            exc |= EXC_LOW_PERFUSION
        if pi < LOW_SIGNAL_PI:  # the probe is on (above): `track.low_signal`, per second
            exc |= EXC_LOW_SIGNAL_IQ
        return masimo_line(
            device_time=device_time,
            spo2=int(track.spo2[i]),
            pr=int(track.pr[i]),
            pi=pi,
            exc=exc,
            serial=s.serial,
        )

    def render(self, first: int, stop: int) -> list[bytes]:
        return [self.line(k) for k in range(first, stop)]


class NoninDf7Player(StreamingPlayer):
    """A Nonin OEM III in Data Format 7: 25-frame packets, 3 a second, 16-bit pleth."""

    protocol: ClassVar[str] = "nonin-df7"
    chunks_per_s: ClassVar[int] = nonin.PACKETS_PER_S

    def __init__(self, *, name: str, session: Session, emit: Emit) -> None:
        super().__init__(name=name, session=session, emit=emit)
        self.pleth = PlethWave(
            scenario=session.scenario,
            vitals=session.vitals,
            track=session.track,
            rate_hz=nonin.FRAME_RATE_HZ,
            origin=session.origin,
        )

    def replanned(self) -> None:
        s = self.session
        self.pleth.rebind(vitals=s.vitals, track=s.track, origin=s.origin)

    def render(self, first: int, stop: int) -> list[bytes]:
        track = self.session.track
        fpp = nonin.FRAMES_PER_PACKET
        packets = np.arange(first, stop)
        second = self.session.indices(packets // nonin.PACKETS_PER_S)
        off = track.sensor_off[second]
        status = np.zeros((len(packets), fpp), dtype=np.uint8)
        status[off] |= nonin.SNSD
        status[track.artifact[second]] |= nonin.ARTF
        # Perfusion on the 12 frames from each beat, coded by PI; none with the probe off.
        onsets = self.pleth.beat_onsets(first * fpp - nonin.PERFUSION_FRAMES + 1, stop * fpp)
        recent = np.convolve(onsets, np.ones(nonin.PERFUSION_FRAMES), "valid") > 0
        pi = track.pi[second]
        code = np.where(
            pi < LOW_PERFUSION_PI,
            nonin.PERFUSION_RED,
            np.where(pi < MARGINAL_PERFUSION_PI, nonin.PERFUSION_YELLOW, nonin.PERFUSION_GREEN),
        ).astype(np.uint8)
        perfusion = np.where(recent.reshape(-1, fpp), code[:, None], 0).astype(np.uint8)
        status |= np.where(off[:, None], 0, perfusion).astype(np.uint8)
        wave = self.pleth.samples(first * fpp, stop * fpp).reshape(-1, fpp)
        pleth = np.clip(np.rint(NONIN_PLETH_MID + NONIN_PLETH_SCALE * wave), 0, 0xFFFF)
        values = nonin.df7_values(
            spo2=np.where(off, nonin.NO_SPO2, track.spo2[second]),
            pr=np.where(off, nonin.NO_HR, track.pr[second]),
            packet=packets,
        )
        data = nonin.df7_packets(status=status, pleth=pleth.astype(np.uint16), values=values)
        size = nonin.FRAME_LEN * fpp
        return [data[i : i + size] for i in range(0, len(data), size)]


class ContecV7Player(StreamingPlayer):
    """A Contec CMS50 in V7.0 mode: 60 packets a second while the host keeps it streaming."""

    protocol: ClassVar[str] = "contec-v7"
    chunks_per_s: ClassVar[int] = 3
    _per_chunk = contec.PACKET_RATE_HZ // 3

    def __init__(self, *, name: str, session: Session, emit: Emit) -> None:
        super().__init__(name=name, session=session, emit=emit)
        self.device = contec.ContecV7Device()
        self.pleth = PlethWave(
            scenario=session.scenario,
            vitals=session.vitals,
            track=session.track,
            rate_hz=contec.PACKET_RATE_HZ,
            origin=session.origin,
        )

    def replanned(self) -> None:
        s = self.session
        self.pleth.rebind(vitals=s.vitals, track=s.track, origin=s.origin)

    def sending(self, t: float) -> bool:
        return self.device.streaming(t)

    def receive(self, data: bytes, t: float) -> None:
        answer = self.device.receive(data, t)
        if answer:
            self._emit([(t, answer)])

    def unplugged(self) -> None:
        self.device.reset()

    def render(self, first: int, stop: int) -> list[bytes]:
        track = self.session.track
        n = self._per_chunk
        start, end = first * n, stop * n
        second = self.session.indices(np.arange(start, end) // contec.PACKET_RATE_HZ)
        off = track.sensor_off[second]
        pi = track.pi[second]
        wave = self.pleth.samples(start, end)
        pleth = np.rint(CONTEC_PLETH_MID + CONTEC_PLETH_SCALE * wave).astype(np.int64)
        data = contec.v7_live_data(
            spo2=track.spo2[second],
            pr=track.pr[second],
            pi_hundredths=np.rint(pi * 100).astype(np.int64),
            pleth=np.where(off, 0, pleth),
            # Signal strength 0..8 follows the pulse amplitude (PI) [I].
            signal=np.where(off, 0, np.clip(np.rint(pi * 2), 1, 8)).astype(np.int64),
            bar=np.where(off, 0, np.clip(np.rint((wave + 0.3) * 10), 0, 15)).astype(np.int64),
            finger_out=off,
            # No artifact bit in V7.0: under motion the device searches for the pulse.
            searching=track.artifact[second],
            beep=self.pleth.beat_onsets(start, end) & ~off,
        )
        wire = contec.v7_live_packets(data)
        size = contec.PACKET_LEN * n
        return [wire[i : i + size] for i in range(0, len(wire), size)]


class SuntechPlayer(DevicePlayer):
    """A SunTech Advantage NIBP module: silent until the host commands it."""

    protocol: ClassVar[str] = "suntech-advantage"

    def __init__(
        self,
        *,
        name: str,
        session: Session,
        emit: Emit,
        failures: Sequence[BpFailure] = (),
    ) -> None:
        super().__init__(name=name, session=session, emit=emit)
        scenario = session.scenario
        key = port_key(name)

        def scatter(index: int) -> tuple[int, int, int]:
            rng = scenario.rng(NIBP_STREAM, key, index)
            d = rng.normal(0.0, (NIBP_SCATTER_SYS, NIBP_SCATTER_DIA, NIBP_SCATTER_PR))
            sys, dia, pr = np.rint(d).astype(np.int64).tolist()
            return sys, dia, pr

        self.module = SuntechModule(patient=self.truth, failures=failures, scatter=scatter)
        self._wake = asyncio.Event()

    def truth(self, t: float) -> BpTruth:
        """The patient's BP and pulse at session time `t`."""
        v = self.session.vitals
        k = self.session.index(int(t))
        return BpTruth(sys=int(v.sys[k]), dia=int(v.dia[k]), pr=int(v.pr[k]))

    def receive(self, data: bytes, t: float) -> None:
        answer = self.module.receive(data, t)
        if answer:
            self._emit([(t, answer)])
        self._wake.set()  # a measurement may have started: its `K` is due

    def unplugged(self) -> None:
        self.module.reset()
        self._wake.set()

    async def run(self, clock: LoopClock, end_s: float) -> None:
        garbage = self._garbage
        junk_at = [] if garbage is None else np.flatnonzero(garbage).tolist()
        j = 0
        while True:
            now = clock.now()
            due = self.module.next_due()
            if due is not None and due <= now:
                answer = self.module.advance(now)
                if answer:
                    self._emit([(due, answer)])
                continue
            while j < len(junk_at) and junk_at[j] <= now:
                self._emit([(float(junk_at[j]), self.junk(junk_at[j]))])
                j += 1
            if now >= end_s:
                return
            wake = min(end_s, due if due is not None else end_s)
            if j < len(junk_at):
                wake = min(wake, junk_at[j])
            self._wake.clear()
            if math.isinf(wake):  # played on until cancelled: only a command wakes it
                await self._wake.wait()
                continue
            try:
                async with clock.timeout(wake - now):
                    await self._wake.wait()
            except TimeoutError:
                pass


PLAYERS: dict[str, type[StreamingPlayer | SuntechPlayer]] = {
    cls.protocol: cls for cls in (MasimoPlayer, NoninDf7Player, ContecV7Player, SuntechPlayer)
}
assert set(PLAYERS) == set(SIM_PROTOCOLS)
assert set(NIBP_PROTOCOLS) | set(OXIMETER_PROTOCOLS) == set(SIM_PROTOCOLS)


def parse_devices(spec: str) -> dict[str, str]:
    """`spo2=nonin-df7,nibp=suntech-advantage` as a port → protocol mapping.

    Raises `ConfigError` naming `--devices` and what is wrong.
    """
    devices: dict[str, str] = {}
    problems = []
    for item in (part.strip() for part in spec.split(",")):
        name, sep, protocol = item.partition("=")
        name, protocol = name.strip(), protocol.strip()
        if not sep or not PORT_NAME.match(name):
            problems.append(f"--devices: {item!r}: expected PORT=PROTOCOL, PORT like 'spo2'")
        elif protocol not in SIM_PROTOCOLS:
            problems.append(
                f"--devices: {name}: unknown protocol {protocol!r} "
                f"(the simulator plays: {', '.join(SIM_PROTOCOLS)})"
            )
        elif name in devices:
            problems.append(f"--devices: {name}: named twice")
        else:
            devices[name] = protocol
    if problems:
        raise ConfigError(problems)
    return devices
