"""The worker's own liveness check: a worker that stops taking work from a queue that has some exits, to be restarted.

Celery can reconnect to a restarted Redis and yet never consume again (celery/celery#8091, #10205): the
process is alive, answers nothing and takes nothing, and the inbox sweeper's re-enqueues only lengthen a
queue nobody reads. The watchdog runs in the worker's main process. When the worker's queues have had
messages waiting for `stall_after` seconds while it had a free slot and received none, it shuts the
worker down with WATCHDOG_EXIT_CODE. A worker that was consuming and then died of an error exits with it
too. `leadbridge run` restarts a worker that exits so; under compose or Kubernetes the restart policy
does. A restarted worker consumes again, and the inbox loses nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.signals import task_received, worker_ready, worker_shutting_down
from celery.worker import state as worker_state

log = logging.getLogger(__name__)

WATCHDOG_EXIT_CODE = 75  # EX_TEMPFAIL: "restart me", told apart from a crash by `leadbridge run`
HARD_EXIT_AFTER = 30.0  # seconds a warm shutdown may take before the process exits anyway


@dataclass
class StallDetector:
    """Decides from what the worker sees whether its consumer has stopped taking messages."""

    stall_after: float
    capacity: int
    last_received: float
    waiting_since: float | None = None  # since when messages have waited while a slot was free

    def received(self, now: float) -> None:
        """A message reached the worker."""
        self.last_received = now

    def stalled(self, now: float, backlog: int, busy: int) -> bool:
        """True when messages have waited, with a slot free and nothing received, for `stall_after` seconds."""
        if backlog <= 0 or busy >= self.capacity:
            # Nothing to take, or every slot taken: not receiving is right.
            self.waiting_since = None
            return False
        if self.waiting_since is None:
            self.waiting_since = now
        return now - max(self.waiting_since, self.last_received) >= self.stall_after


def queued_messages(app: Any, queues: Sequence[str]) -> int:
    """Messages waiting in `queues` on the broker (Redis lists or AMQP queues)."""
    from kombu.exceptions import ChannelError

    total = 0
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        for name in queues:
            try:
                total += channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:
                # Redis has no key for an empty queue; AMQP may not have declared it yet: nothing waits.
                continue
    return total


class Watchdog(threading.Thread):
    """Checks every `interval` seconds whether the worker still consumes; calls `on_stall` once if not."""

    def __init__(self, detector: StallDetector, backlog: Callable[[], int], busy: Callable[[], int],
                 on_stall: Callable[[int], None], interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name="leadbridge-watchdog", daemon=True)
        self.detector = detector
        self.backlog = backlog
        self.busy = busy
        self.on_stall = on_stall
        self.interval = interval
        self.clock = clock
        self.halt = threading.Event()

    def run(self) -> None:
        """Check until stopped or stalled."""
        while not self.halt.wait(self.interval):
            try:
                waiting = self.backlog()
            except Exception:  # the broker is away: reconnecting is Celery's job, not a stall
                log.debug("worker.watchdog.broker_unreachable", exc_info=True)
                continue
            if self.detector.stalled(self.clock(), waiting, self.busy()):
                self.on_stall(waiting)
                return


_tripped = False  # the watchdog fired
_ready = False  # the worker got as far as consuming


def run_worker(app: Any, argv: list[str]) -> int:
    """Run a Celery worker until it stops; return its exit code, WATCHDOG_EXIT_CODE when it should be restarted.

    A worker that was consuming and then stopped on an error from outside (kombu has failed on a Redis
    restart with "Unrecoverable error") is restarted like a stalled one; one that never got going is not.
    """
    from celery.bin.celery import celery as celery_command

    # What app.start does, keeping the exit code (app.start and worker_main drop it).
    celery_command.params[0].default = app
    try:
        code = celery_command.main(args=argv, standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    code = int(code or 0)
    if _tripped or (_ready and code != 0):
        return WATCHDOG_EXIT_CODE
    return code


def shut_down_stalled(backlog: int) -> None:
    """Ask the worker for a warm shutdown with WATCHDOG_EXIT_CODE, and exit hard if it cannot do even that."""
    global _tripped
    log.error("worker.watchdog.stalled", extra={"backlog": backlog})
    _tripped = True
    # The event loop checks this flag on every turn and shuts down warm (running tasks finish).
    worker_state.should_stop = WATCHDOG_EXIT_CODE
    timer = threading.Timer(HARD_EXIT_AFTER, os._exit, args=(WATCHDOG_EXIT_CODE,))
    timer.daemon = True
    timer.start()


_watchdog: Watchdog | None = None


def install(stall_after: float, capacity: int) -> None:
    """Start a watchdog with the worker (connect before the worker starts; 0 seconds turns it off)."""

    @worker_ready.connect(weak=False)
    def _start(sender: Any, **_: object) -> None:
        global _watchdog, _ready
        _ready = True
        if stall_after <= 0:
            return
        # The queues this worker was started on: the ones it must keep consuming.
        queues = tuple(sorted(sender.app.amqp.queues.consume_from))
        detector = StallDetector(stall_after, capacity, last_received=time.monotonic())
        task_received.connect(lambda **__: detector.received(time.monotonic()), weak=False)
        _watchdog = Watchdog(detector, lambda: queued_messages(sender.app, queues),
                             lambda: len(worker_state.active_requests), shut_down_stalled,
                             interval=max(1.0, min(10.0, stall_after / 4)))
        _watchdog.start()
        log.info("worker.watchdog.started", extra={"queues": ",".join(queues), "stall_after": stall_after})

    @worker_shutting_down.connect(weak=False)
    def _stop(**_: object) -> None:
        if _watchdog is not None:
            _watchdog.halt.set()
