"""Poison isolation (tasks.isolation): bisection finds the failing items and lets every other item through."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis
from sqlalchemy.exc import OperationalError

from connectors.base import TransientConnectorError
from tasks.isolation import is_transient, isolate, retry_delay


def runner(bad: set[int]) -> tuple[list[list[int]], object]:
    calls: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        if bad & set(items):
            raise ValueError("poison")
        return list(items)

    return calls, run


@pytest.mark.parametrize("bad", [set(), {0}, {99}, {37}, {3, 64}, set(range(0, 100, 10))])
def test_every_good_item_goes_through_and_each_bad_one_stands_alone(bad: set[int]) -> None:
    calls, run = runner(bad)
    results, failed = isolate(list(range(100)), run)  # type: ignore[arg-type]
    done = sorted(i for part in results for i in part)
    assert done == sorted(set(range(100)) - bad)
    assert sorted(item for item, _ in failed) == sorted(bad)
    assert all(isinstance(exc, ValueError) for _, exc in failed)
    # One bad item among 100 costs about two runs per halving, not a run per item.
    if len(bad) == 1:
        assert len(calls) <= 2 * 7 + 1


def test_a_whole_batch_known_to_have_failed_is_not_run_again() -> None:
    calls, run = runner({5})
    isolate(list(range(8)), run, whole_failed=ValueError("poison"))  # type: ignore[arg-type]
    assert list(range(8)) not in calls


@pytest.mark.parametrize("exc", [OperationalError("SELECT 1", {}, Exception("database is locked")),
                                 redis.ConnectionError("gone"), TransientConnectorError("429", vendor="hubspot", retry_after=2.0)])
def test_transient_errors_are_not_blamed_on_items(exc: Exception) -> None:
    def run(items: Sequence[int]) -> None:
        raise exc

    assert is_transient(exc)
    with pytest.raises(type(exc)):
        isolate([1, 2, 3], run)


def test_retry_delay_backs_off_to_a_minute() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert retry_delay(30) == 60
