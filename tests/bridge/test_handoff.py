"""The hand-off to the ingest queue: one publisher at a time, deliveries finishing meanwhile merged, nothing dropped."""

from __future__ import annotations

import threading

from bridge.handoff import Handoff


def test_uncontended_deliveries_are_published_one_each() -> None:
    sent: list[list[int]] = []
    handoff = Handoff(sent.append)
    handoff.submit([1, 2])
    handoff.submit([3])
    assert sent == [[1, 2], [3]]


def test_deliveries_finishing_during_a_publish_are_merged_into_the_next() -> None:
    sent: list[list[int]] = []
    first_started, release = threading.Event(), threading.Event()

    def slow_send(ids: list[int]) -> None:
        if not sent:
            first_started.set()
            assert release.wait(10)
        sent.append(ids)

    handoff = Handoff(slow_send)
    publisher = threading.Thread(target=handoff.submit, args=([1, 2, 3],))
    publisher.start()
    assert first_started.wait(10)
    handoff.submit([4, 5])  # returns at once: the publisher thread will take these
    handoff.submit([6])
    assert sent == []
    release.set()
    publisher.join(10)
    assert sent == [[1, 2, 3], [4, 5, 6]]
    assert handoff.published == 2


def test_large_merges_are_split_and_a_failed_publish_does_not_stall_the_next() -> None:
    sent: list[list[int]] = []
    calls = {"n": 0}

    def flaky(ids: list[int]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("broker down")  # left to the inbox sweeper
        sent.append(ids)

    handoff = Handoff(flaky, max_ids=3)
    handoff.submit([1, 2])
    assert sent == []
    handoff.submit(list(range(10, 17)))
    assert sent == [[10, 11, 12], [13, 14, 15], [16]]
