"""Alerts a channel has not taken yet (:class:`Outbox`, kept in ``watch``'s state file) and their
sending off the check loop (:class:`Sender`): an alert counts as sent only when a channel took it;
until then it is retried on later ticks with backoff, oldest first, each channel on its own."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .alerts import TOTAL_TIME, Alert, Channel, Delivery, deliver_one

# The channels' logger: an undelivered alert is news about the channel.
log = logging.getLogger('diskguard.alerts')


@dataclass
class Pending:
    """An alert a channel has not taken yet."""

    channel: str
    alert: Alert
    attempts: int = 0
    next_attempt: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            'channel': self.channel,
            'alert': self.alert.to_json(),
            'attempts': self.attempts,
            'next_attempt': self.next_attempt,
            'error': self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        error = data.get('error')
        return cls(
            str(data['channel']),
            Alert.from_json(data['alert']),
            int(data['attempts']),
            float(data['next_attempt']),
            None if error is None else str(error),
        )


class Outbox:
    """Alerts not yet taken, per channel, in order; each failed try moves the next one back
    (``retry`` seconds doubling up to ``max_retry``). At most ``limit`` alerts wait per channel: the
    oldest go first (the newest says the current state). Thread-safe."""

    def __init__(
        self, channels: list[Channel], *, retry: float = 60.0, max_retry: float = 3600.0, limit: int = 20
    ) -> None:
        self.channels = {c.name: c for c in channels}
        self.retry, self.max_retry, self.limit = retry, max_retry, limit
        self._items: list[Pending] = []
        self._lock = threading.Lock()

    def add(self, alert: Alert, now: float) -> None:
        with self._lock:
            for name in self.channels:
                self._items.append(Pending(name, alert, next_attempt=now))
                mine = [p for p in self._items if p.channel == name]
                for dropped in mine[: max(0, len(mine) - self.limit)]:
                    log.warning('alert via %s dropped undelivered (more than %d waiting)', name, self.limit)
                    self._items.remove(dropped)

    def pending(self) -> list[Pending]:
        with self._lock:
            return list(self._items)

    def due(self, now: float) -> list[Pending]:
        """What may be tried now, oldest first: per channel, its alerts in order, from the oldest
        once its time has come (a channel is never asked to take a newer alert before an older)."""
        with self._lock:
            waiting: set[str] = set()
            due = []
            for p in self._items:
                if p.channel in waiting:
                    continue
                # A time further away than the longest backoff (a clock set back, a damaged state
                # file, NaN) would hold the channel's alerts for good: it is due now.
                if p.next_attempt <= now or not p.next_attempt <= now + self.max_retry:
                    due.append(p)
                else:
                    waiting.add(p.channel)
            return due

    def record(self, item: Pending, error: str | None, now: float) -> None:
        with self._lock:
            if item not in self._items:
                return
            if error is None:
                self._items.remove(item)
                return
            item.attempts += 1
            item.error = error
            # The exponent is capped: a channel down for weeks must not overflow a float.
            doubling = 2.0 ** min(max(item.attempts - 1, 0), 64)
            item.next_attempt = now + min(self.max_retry, self.retry * doubling)

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.to_json() for p in self._items]

    def load(self, items: list[Any]) -> None:
        """Pending alerts from a state file; those for channels no longer configured are dropped, and
        each channel keeps its newest ``limit`` (a damaged or hostile file cannot make it hold more)."""
        loaded = [Pending.from_json(x) for x in items]
        with self._lock:
            for p in loaded:
                if p.channel in self.channels:
                    self._items.append(p)
                else:
                    log.warning('dropping an alert pending for %s: that channel is no longer set', p.channel)
            for name in self.channels:
                mine = [p for p in self._items if p.channel == name]
                if len(mine) > self.limit:
                    log.warning(
                        'dropping %d alerts pending for %s (at most %d wait)',
                        len(mine) - self.limit,
                        name,
                        self.limit,
                    )
                    dropped = {id(p) for p in mine[: len(mine) - self.limit]}
                    self._items = [p for p in self._items if id(p) not in dropped]


class Sender:
    """Sends an :class:`Outbox`'s due alerts on a background thread, one batch at a time, each batch
    within ``total`` seconds: a channel that hangs never holds up the checks."""

    def __init__(
        self, outbox: Outbox, *, total: float = TOTAL_TIME, clock: Callable[[], float] = time.time
    ) -> None:
        self.outbox, self.total, self.clock = outbox, total, clock
        self._thread: threading.Thread | None = None
        #: The latest outcomes (bounded: the daemon runs for months).
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=100)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def dispatch(self, now: float) -> bool:
        """Starts sending what is due, unless a batch is still on its way; returns whether it did."""
        if self.busy:
            return False
        batch = self.outbox.due(now)
        if not batch:
            return False
        self._thread = threading.Thread(
            target=self._send, args=(batch,), name='diskguard-alerts', daemon=True
        )
        self._thread.start()
        return True

    def _send(self, batch: list[Pending]) -> None:
        deadline = time.monotonic() + self.total
        failed: set[str] = set()
        for n, item in enumerate(batch):
            left = deadline - time.monotonic()
            if item.channel in failed or left <= 0:
                continue  # tried again on a later tick, still in order
            channel = self.outbox.channels[item.channel]
            outcome = deliver_one(channel, item.alert, attempts=2, total=left / (len(batch) - n))
            self.outbox.record(item, outcome.error if not outcome.ok else None, self.clock())
            self.deliveries.append(outcome)
            if not outcome.ok:
                failed.add(item.channel)
                log.warning('alert via %s kept to retry later: %s', channel.name, outcome.error)

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the batch on its way (at most ``timeout`` seconds); returns whether it is done."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy
