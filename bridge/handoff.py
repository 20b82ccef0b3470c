"""Hand committed inbox ids to the ingest queue, merging the deliveries that finish while a publish is under way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

MAX_IDS_PER_TASK = 500  # five HubSpot batches: a task stays short enough to retry cheaply


class Handoff:
    """Publishes ids as ingest tasks; one publisher at a time, the others leave their ids to it.

    A publish costs about as much CPU as handling a 100-event delivery. Under load, deliveries that
    complete while another thread is publishing are merged into that thread's next message instead of
    each paying for its own; with no contention a delivery is published at once, as before. A failed
    publish is logged and left to the inbox sweeper: the rows are committed already.
    """

    def __init__(self, send: Callable[[list[int]], None], max_ids: int = MAX_IDS_PER_TASK) -> None:
        self._send = send
        self._max_ids = max_ids
        self._lock = threading.Lock()
        self._pending: list[int] = []
        self._publishing = False
        self.published = 0  # messages sent (for tests and curiosity)

    def submit(self, ids: list[int]) -> None:
        """Queue `ids`; publish them (and whatever else is waiting) unless another thread is doing so."""
        with self._lock:
            self._pending.extend(ids)
            if self._publishing:
                return
            self._publishing = True
        try:
            while True:
                with self._lock:
                    batch = self._pending[: self._max_ids]
                    del self._pending[: self._max_ids]
                    if not batch:
                        self._publishing = False
                        return
                try:
                    self._send(batch)
                    self.published += 1
                except Exception:  # noqa: BLE001 - broker down: the sweeper re-enqueues the committed rows
                    log.warning("webhook.enqueue_failed", extra={"rows": len(batch)})
        except BaseException:
            with self._lock:
                self._publishing = False
            raise
