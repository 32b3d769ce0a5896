"""Fan-out of monitor events to subscribers that never hold the monitor up.

`publish` is synchronous and O(subscribers): it never awaits. Each subscriber has its own
bounded queue; when a slow subscriber's queue is full, it loses its own oldest *reading*
(counted in `dropped`). Alarm transitions, phase changes and nurse actions are rare and are
never dropped, so the recorder and the console always see every one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from sessiond.model import Reading, Waveform

#: What a slow subscriber may lose (the oldest first): readings and the pleth waveform.
_DROPPABLE = (Reading, Waveform)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sessiond.model import Event

logger = logging.getLogger(__name__)

#: Default queue length: a minute of 75 Hz frames is far more than any healthy consumer lags.
DEFAULT_MAXSIZE = 4096


class Subscription:
    """One subscriber's queue. Iterate it with `async for`, or call `get()`."""

    def __init__(
        self,
        bus: Bus,
        name: str,
        maxsize: int,
        kinds: tuple[type, ...] | None = None,
        *,
        waveforms: bool = False,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        #: Only events of these types are queued (None: every event).
        self.kinds = kinds
        #: Whether this subscriber takes `Waveform` events (the console's pleth).
        self.waveforms = waveforms
        self.dropped = 0
        #: Session times of the first and last reading dropped (None: none dropped yet).
        self.dropped_span: tuple[float, float] | None = None
        #: Events ever put in this queue (with `dropped`, lets a consumer say what it has done).
        self.received = 0
        self._bus = bus
        self._items: deque[Event] = deque()
        self._readings = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def put(self, event: Event) -> None:
        """Queue `event`; past `maxsize`, drop this subscriber's oldest reading."""
        if self.kinds is not None and not isinstance(event, self.kinds):
            return
        self.received += 1
        if isinstance(event, _DROPPABLE):
            if self._readings >= self.maxsize:
                self._drop_oldest_reading()
            self._readings += 1
        self._items.append(event)
        self._wake()

    def _drop_oldest_reading(self) -> None:
        # Readings are nearly everything in the queue, so the scan stops within a few items.
        for i, item in enumerate(self._items):
            if isinstance(item, _DROPPABLE):
                del self._items[i]
                self._readings -= 1
                self.dropped += 1
                first = item.t if self.dropped_span is None else self.dropped_span[0]
                self.dropped_span = (first, item.t)
                if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                    logger.warning(
                        "bus: subscriber %s is slow, %d readings dropped", self.name, self.dropped
                    )
                return

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> Event | None:
        """The next event, or `None` when the queue is empty."""
        if not self._items:
            return None
        event = self._items.popleft()
        if isinstance(event, _DROPPABLE):
            self._readings -= 1
        return event

    async def get(self) -> Event:
        """Wait for the next event; `EOFError` once the subscription is closed and drained."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._closed:
                raise EOFError(self.name)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed (what is queued can still be read)."""
        return self._closed

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.get()
            except EOFError:
                return

    def close(self) -> None:
        """Stop receiving; what is queued can still be read."""
        self._closed = True
        self._bus.unsubscribe(self)
        self._wake()


class Bus:
    """The in-process event bus between the monitor and its consumers."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(
        self,
        name: str,
        *,
        maxsize: int = DEFAULT_MAXSIZE,
        kinds: tuple[type, ...] | None = None,
        waveforms: bool = False,
    ) -> Subscription:
        """A new subscription that receives every event published from now on (of `kinds`
        only, when given: a consumer of rare events never queues the readings; `Waveform`s
        only with `waveforms`)."""
        sub = Subscription(self, name, maxsize, kinds, waveforms=waveforms)
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def publish(self, event: Event) -> None:
        """Hand `event` to every subscriber; never blocks."""
        if isinstance(event, Waveform):
            for sub in self._subscriptions:
                if sub.waveforms:
                    sub.put(event)
            return
        for sub in self._subscriptions:
            sub.put(event)

    def publish_all(self, events: list[Event]) -> None:
        for event in events:
            self.publish(event)

    def close(self) -> None:
        """Close every subscription (shutdown)."""
        for sub in list(self._subscriptions):
            sub.close()
