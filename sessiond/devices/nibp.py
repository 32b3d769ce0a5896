"""The SunTech Advantage command layer: measure on request, with timeouts, over a `SerialLink`.

The module speaks only when spoken to (devices.md §4.1): start `O`, then cuff pressure while
polled, `K` when done, and the BP data when asked for it. So liveness is "answers a command
within `command_timeout_s`" (DESIGN §5): a probe when the port opens and every poll during a
measurement. An unanswered command declares the link lost (the port is reopened and
`device_lost` raised); an error reply or no result in time is a failed measurement
(`NibpFailed`, hence `nibp_error`). A BP data frame goes through the decoder to the monitor
like any reading, its error code included, so it is never reported twice.

One command is in flight at a time (the module answers in order, and a reply is matched to
the command waiting for it). A request that cannot start at once waits in a queue of one:
the monitor asks again inside the callback of the result it judges (a re-measure after a BP
alarm), before the measurement that produced it has ended; a resumed session asks before the
port is open. It starts when the running measurement ends or the module has answered the
probe of a newly opened port; a port still closed after `command_timeout_s` fails it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, TypeGuard

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
    from sessiond.devices.link import SerialLink
    from sessiond.devices.suntech import Reply
    from sessiond.session.settings import NibpConfig

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


#: Acknowledgements that end a measurement rather than answer a new command.
_ENDINGS = frozenset({AckCode.COMPLETED, AckCode.ABORTED})


def _ends_measurement(reply: Reply) -> TypeGuard[Ack]:
    """An acknowledgement other than `O`: the measurement is over (`K`) or failed."""
    return isinstance(reply, Ack) and reply.code is not AckCode.RECEIVED


def _answer(future: asyncio.Future[Reply]) -> Reply | None:
    """The reply a waiter got, also when its timeout cancelled the wait in the same loop turn
    (the task is cancelled, the future keeps its result): None when nothing came."""
    if future.done() and not future.cancelled():
        return future.result()
    return None


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
        #: The reason of the request waiting for its turn (a later request replaces it).
        self.queued: str | None = None
        #: The port is open and the module has answered on it.
        self._ready = False
        self._closed = False
        self._lock = asyncio.Lock()  # one command in flight: its waiter is the only one
        self._waiter: tuple[Callable[[Reply], bool], asyncio.Future[Reply]] | None = None
        #: The end of the running measurement (`K`, `A` ...) when no waiter took it.
        self._ended: Ack | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def _command_timeout_s(self) -> float:
        """Session seconds, never less than a real round trip can take at a demo's speed."""
        return self.clock.device_timeout(self.config.command_timeout_s)

    @property
    def _measurement_timeout_s(self) -> float:
        return self.clock.device_timeout(self.config.measurement_timeout_s)

    # Wiring for SerialLink ------------------------------------------------------------------

    def on_open(self) -> None:
        """The port (re)opened: probe the module, which says nothing on its own.

        What was in flight belonged to the port that failed: left running, its timeout
        would declare the new port lost. A queued request starts once the probe is answered.
        """
        for task in (self._probe, self._task):
            if task is not None and not task.done():
                task.cancel()
        self._ready = False
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
            # Before the report: whoever hears of it may ask for a measurement at once.
            self._ready = True
            self.link.report_connected("answering")
        waiter = self._waiter
        for reply in replies:
            if waiter is not None and not waiter[1].done() and waiter[0](reply):
                waiter[1].set_result(reply)
            elif self.measuring and _ends_measurement(reply):
                # Unasked (`K`, or `A` after `cancel()`): it may come next to the answer to a
                # poll, or between two waits; kept for `_wait_done`, not lost.
                self._ended = reply

    # Commands -----------------------------------------------------------------------------

    def measure(self, reason: str) -> bool:
        """Start a measurement now (True), or queue it (False) until the running one ends or
        the module has answered on an open port; a later request replaces a queued one."""
        if self._closed:
            return False
        if self.measuring or not (self._ready and self.link.is_open):
            if self.queued is not None:
                logger.info("%s: %s replaces queued %s", self.link.name, reason, self.queued)
            self.queued = reason
            if not self.measuring and self._deadline is None:
                # Waiting for the port: give up if it is still closed after a command timeout.
                loop = asyncio.get_running_loop()
                due = self.clock.loop_time(self.clock.now() + self._command_timeout_s)
                self._deadline = loop.call_at(due, self._not_connected)
            return False
        self._drop_queued()
        self.measuring = True
        self._task = asyncio.create_task(self._measure(reason), name=f"nibp[{self.link.name}]")
        return True

    def cancel(self) -> bool:
        """Abort the running measurement (the module deflates and answers `A`, a failure) and
        drop a queued request; False when there was neither."""
        dropped = self._drop_queued()
        if not self.measuring:
            return dropped
        return self.link.send(abort_command()) or dropped

    async def close(self) -> None:
        """Stop: drop a queued request, abort a running measurement so the cuff deflates."""
        self._closed = True
        self._drop_queued()
        measuring = self.measuring  # the cancelled task clears the flag on its way out
        for task in (self._task, self._probe):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if measuring:
            self.link.send(abort_command())
            self.measuring = False

    # Internals ----------------------------------------------------------------------------

    async def _probe_module(self) -> None:
        try:
            await self._ask(cuff_pressure_command(), lambda _reply: True)
        except PortClosedError:
            return
        except NoAnswerError:
            self._lost(f"no answer to a probe in {self._command_timeout_s:g} s")
            reason = self.queued
            if self._drop_queued() and reason is not None:
                self._fail(f"not measured ({reason}): {self.link.name} did not answer")
            return
        self._serve_queued()

    async def _ask(self, command: bytes, accept: Callable[[Reply], bool]) -> Reply:
        """Send `command` and wait for the reply `accept` takes, within the command timeout."""
        async with self._lock:
            # Whatever the module was saying before is over: its rest is not this answer.
            self._discard_partial("before a command")
            return await self._exchange(command, accept)

    async def _exchange(self, command: bytes, accept: Callable[[Reply], bool]) -> Reply:
        """`_ask` for a caller that holds the lock."""
        future = self._expect(accept)
        try:
            if not self.link.send(command):
                raise PortClosedError
            async with self.clock.timeout(self._command_timeout_s):
                return await future
        except TimeoutError:
            answer = _answer(future)
            if answer is not None:
                return answer  # it came in the loop turn that the timeout ended
            self._discard_partial("after an unanswered command")
            msg = f"no answer in {self._command_timeout_s:g} s"
            raise NoAnswerError(msg) from None
        finally:
            self._forget(future)

    def _expect(self, accept: Callable[[Reply], bool]) -> asyncio.Future[Reply]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiter = (accept, future)
        return future

    def _forget(self, future: asyncio.Future[Reply]) -> None:
        if self._waiter is not None and self._waiter[1] is future:
            self._waiter = None

    async def _measure(self, reason: str) -> None:
        try:
            await self._measure_steps(reason)
        except PortClosedError:
            self._fail(LINK_LOST)
        except NoAnswerError as exc:
            self._fail(f"module did not answer: {exc}")
            self._lost(f"BP module did not answer a command: {exc}")
        finally:
            if self._task is asyncio.current_task():  # not one cancelled by a reopen
                self.measuring = False
        # Not reached when cancelled: a reopen serves the queue after its probe, close drops it.
        self._serve_queued()

    async def _measure_steps(self, reason: str) -> None:
        logger.info("%s: measuring (%s)", self.link.name, reason)
        # Not the `A` of an abort sent just before, nor a late `K`: neither answers a start.
        reply = await self._ask(
            start_measurement_command(), lambda r: isinstance(r, Ack) and r.code not in _ENDINGS
        )
        assert isinstance(reply, Ack)
        if reply.code is not AckCode.RECEIVED:
            self._fail(f"start refused: {_FAILED_ACKS.get(reply.code, reply.code.value)}")
            return
        self._ended = None
        started = self.clock.now()
        done = await self._wait_done(started)
        if done is None:
            self.link.send(abort_command())
            self._fail(f"no result within {self._measurement_timeout_s:g} s")
            return
        if done.code is not AckCode.COMPLETED:
            self._fail(_FAILED_ACKS.get(done.code, f"reply {done.code.value}"))
            return
        # The result frame reaches the monitor through the decoder, error code and all.
        result = await self._ask(read_result_command(), lambda r: isinstance(r, BpResult))
        assert isinstance(result, BpResult)
        if not result.ok:
            logger.warning("%s: BP measurement failed: %s", self.link.name, result.error_text)
        self.measurements += 1

    async def _wait_done(self, started: float) -> Ack | None:
        """Poll the cuff until the module says it is done (an ack other than `O`)."""
        deadline = started + self._measurement_timeout_s

        while self.clock.now() < deadline:
            async with self._lock:
                # Each poll must be answered (liveness); a `K` may come instead of the pressure.
                # No discard before it: the module may be halfway through an unasked `K`, and a
                # broken frame gives way to the whole reply after it anyway.
                reply = await self._exchange(cuff_pressure_command(), lambda _r: True)
                if not _ends_measurement(reply) and self._ended is not None:
                    reply = self._ended
                if not _ends_measurement(reply):
                    future = self._expect(_ends_measurement)
                    try:
                        wait = min(POLL_S, max(0.0, deadline - self.clock.now()))
                        async with self.clock.timeout(wait):
                            reply = await future
                    except TimeoutError:
                        # A `K` that came in the loop turn that the wait ended is taken,
                        # not lost with its future.
                        answer = _answer(future)
                        if answer is None:
                            continue
                        reply = answer
                    finally:
                        self._forget(future)
            assert isinstance(reply, Ack)
            return reply
        return None

    def _serve_queued(self) -> None:
        """Start the queued request, if any (it queues again if the port is not ready)."""
        reason = self.queued
        if reason is not None and not self.measuring:
            self._drop_queued()
            self.measure(reason)

    def _drop_queued(self) -> bool:
        """Forget the queued request; False when there was none."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        dropped = self.queued is not None
        self.queued = None
        return dropped

    def _not_connected(self) -> None:
        """A queued request's wait for the port is over: fail it once if the port is closed."""
        self._deadline = None
        reason = self.queued
        if reason is None or self.measuring or self.link.is_open:
            return  # started, or the port is open and the answer to its probe decides
        self.queued = None
        self._fail(f"not measured ({reason}): {self.link.name} is not connected")

    def _lost(self, reason: str) -> None:
        self._ready = False
        self.link.declare_lost(reason)

    def _discard_partial(self, when: str) -> None:
        dropped = self.decoder.discard_partial()
        if dropped:
            logger.info("%s: %d bytes of an unfinished reply dropped %s", self.link.name,
                        dropped, when)  # fmt: skip

    def _fail(self, detail: str) -> None:
        logger.warning("%s: BP measurement failed: %s", self.link.name, detail)
        self.on_failed(NibpFailed(t=self.clock.now(), device=self.link.name, detail=detail))
