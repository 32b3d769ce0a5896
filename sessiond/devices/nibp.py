"""The SunTech Advantage command layer: measure on request, with timeouts, over a `SerialLink`.

The module speaks only when spoken to (devices.md §4.1): start `O`, then cuff pressure while
polled, `K` when done, and the BP data when asked for it. So liveness is "answers a command
within `command_timeout_s`" (DESIGN §5): a probe when the port opens and every poll during a
measurement. An unanswered command declares the link lost (the port is reopened and
`device_lost` raised); an error reply or no result in time is a failed measurement
(`NibpFailed`, hence `nibp_error`). A BP data frame goes through the decoder to the monitor
like any reading, its error code included, so it is never reported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sessiond.devices.suntech import (
    Ack,
    AckCode,
    BpResult,
    SuntechAdvantageDecoder,
    abort_command,
    cuff_pressure_command,
    read_result_command,
    start_measurement_command,
)
from sessiond.model import NibpFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from sessiond.clock import LoopClock
    from sessiond.config import NibpConfig
    from sessiond.devices.link import SerialLink
    from sessiond.devices.suntech import Reply

logger = logging.getLogger(__name__)

#: How often the cuff pressure is polled while measuring (session seconds).
POLL_S = 1.0

_FAILED_ACKS = {
    AckCode.ABORTED: "measurement aborted",
    AckCode.ERROR: "module reported an error",
    AckCode.TIMEOUT: "module timed out",
    AckCode.BUSY: "module busy",
    AckCode.UNDEFINED: "command undefined",
    AckCode.UNRECOGNIZABLE: "command not recognised",
    AckCode.SLEEP: "module asleep",
}


class NoAnswerError(Exception):
    """The module did not answer a command in time."""


class PortClosedError(Exception):
    """The port closed under a command: the link already knows and reopens it."""


#: What a measurement that lost its port reports.
LINK_LOST = "the link was lost during the measurement"


class NibpLink:
    """Measurements on one SunTech module; one at a time."""

    def __init__(
        self,
        *,
        link: SerialLink,
        clock: LoopClock,
        config: NibpConfig,
        on_failed: Callable[[NibpFailed], None],
    ) -> None:
        decoder = link.decoder
        assert isinstance(decoder, SuntechAdvantageDecoder)
        self.link = link
        self.decoder = decoder
        self.clock = clock
        self.config = config
        self.on_failed = on_failed
        self.measuring = False
        self.measurements = 0
        self._waiter: tuple[Callable[[Reply], bool], asyncio.Future[Reply]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    # Wiring for SerialLink ------------------------------------------------------------------

    def on_open(self) -> None:
        """The port (re)opened: probe the module, which says nothing on its own.

        What was in flight belonged to the port that failed: left running, its timeout
        would declare the new port lost.
        """
        for task in (self._probe, self._task):
            if task is not None and not task.done():
                task.cancel()
        if self.measuring:
            self.measuring = False
            self._fail(LINK_LOST)
        self._probe = asyncio.create_task(
            self._probe_module(), name=f"nibp[{self.link.name}].probe"
        )

    def on_fed(self) -> None:
        """Bytes were decoded: hand the module's replies to the command waiting for them."""
        replies = self.decoder.take_replies()
        if replies:
            self.link.report_connected("answering")
        waiter = self._waiter
        if waiter is None:
            return
        accept, future = waiter
        for reply in replies:
            if accept(reply) and not future.done():
                future.set_result(reply)
                return

    # Commands -----------------------------------------------------------------------------

    def measure(self, reason: str) -> bool:
        """Start a measurement now; False when one is running or the port is down."""
        if self.measuring:
            return False
        if not self.link.is_open:
            # Reported on the next loop turn: the caller may be publishing a batch of events.
            detail = f"not measured ({reason}): {self.link.name} is not connected"
            asyncio.get_running_loop().call_soon(self._fail, detail)
            return False
        self.measuring = True
        self._task = asyncio.create_task(self._measure(reason), name=f"nibp[{self.link.name}]")
        return True

    def cancel(self) -> bool:
        """Abort the running measurement (the module deflates and answers `A`, a failure)."""
        if not self.measuring:
            return False
        return self.link.send(abort_command())

    async def close(self) -> None:
        """Stop: abort a running measurement so the cuff deflates."""
        for task in (self._task, self._probe):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.measuring:
            self.link.send(abort_command())
            self.measuring = False

    # Internals ----------------------------------------------------------------------------

    async def _probe_module(self) -> None:
        try:
            await self._ask(cuff_pressure_command(), lambda _reply: True)
        except PortClosedError:
            return
        except NoAnswerError:
            self.link.declare_lost(f"no answer to a probe in {self.config.command_timeout_s:g} s")

    async def _ask(self, command: bytes, accept: Callable[[Reply], bool]) -> Reply:
        """Send `command` and wait for the reply `accept` takes, within the command timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._waiter = (accept, future)
        try:
            if not self.link.send(command):
                raise PortClosedError
            async with self.clock.timeout(self.config.command_timeout_s):
                return await future
        except TimeoutError:
            msg = f"no answer in {self.config.command_timeout_s:g} s"
            raise NoAnswerError(msg) from None
        finally:
            if self._waiter is not None and self._waiter[1] is future:
                self._waiter = None

    async def _measure(self, reason: str) -> None:
        try:
            await self._measure_steps(reason)
        except PortClosedError:
            self._fail(LINK_LOST)
        except NoAnswerError as exc:
            self._fail(f"module did not answer: {exc}")
            self.link.declare_lost(f"BP module did not answer a command: {exc}")
        finally:
            if self._task is asyncio.current_task():  # not one cancelled by a reopen
                self.measuring = False

    async def _measure_steps(self, reason: str) -> None:
        logger.info("%s: measuring (%s)", self.link.name, reason)
        reply = await self._ask(start_measurement_command(), lambda r: isinstance(r, Ack))
        assert isinstance(reply, Ack)
        if reply.code is not AckCode.RECEIVED:
            self._fail(f"start refused: {_FAILED_ACKS.get(reply.code, reply.code.value)}")
            return
        started = self.clock.now()
        done = await self._wait_done(started)
        if done is None:
            self.link.send(abort_command())
            self._fail(f"no result within {self.config.measurement_timeout_s:g} s")
            return
        if done.code is not AckCode.COMPLETED:
            self._fail(_FAILED_ACKS.get(done.code, f"reply {done.code.value}"))
            return
        # The result frame reaches the monitor through the decoder, error code and all.
        await self._ask(read_result_command(), lambda r: isinstance(r, BpResult))
        self.measurements += 1

    async def _wait_done(self, started: float) -> Ack | None:
        """Poll the cuff until the module says it is done (an ack other than `O`)."""
        deadline = started + self.config.measurement_timeout_s

        def finished(r: Reply) -> bool:
            return isinstance(r, Ack) and r.code is not AckCode.RECEIVED

        while self.clock.now() < deadline:
            # Each poll must be answered (liveness); a `K` may come instead of the pressure.
            reply = await self._ask(cuff_pressure_command(), lambda _r: True)
            if finished(reply):
                assert isinstance(reply, Ack)
                return reply
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Reply] = loop.create_future()
            self._waiter = (finished, future)
            try:
                async with self.clock.timeout(min(POLL_S, max(0.0, deadline - self.clock.now()))):
                    done = await future
            except TimeoutError:
                continue
            finally:
                self._waiter = None
            assert isinstance(done, Ack)
            return done
        return None

    def _fail(self, detail: str) -> None:
        logger.warning("%s: BP measurement failed: %s", self.link.name, detail)
        self.on_failed(NibpFailed(t=self.clock.now(), device=self.link.name, detail=detail))
