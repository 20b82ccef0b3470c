"""The writeback flush lock is a lease: renewed while its holder works, gone soon after the holder is killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import Any

import redis as redis_lib

from core.runtime import redis_client as make_redis_client
from tasks.writeback import lease

TTL = 0.6


def test_a_held_lease_keeps_others_out_for_longer_than_its_ttl(redis_client: redis_lib.Redis) -> None:
    key = "lb:test:lease:renewed"
    redis_client.delete(key)
    with lease(redis_client, key, TTL) as held:
        assert held
        time.sleep(TTL * 3)  # without renewal it would have lapsed twice over
        with lease(redis_client, key, TTL) as other:
            assert not other
        assert redis_client.pttl(key) > 0
    assert not redis_client.exists(key)  # released at the end of the block
    with lease(redis_client, key, TTL) as again:
        assert again


def _hold_forever(url: str, key: str, ready: Any) -> None:
    client = make_redis_client(url)
    with lease(client, key, TTL) as held:
        assert held
        ready.set()
        time.sleep(600)


def test_a_killed_holder_keeps_others_out_no_longer_than_the_ttl(redis_client: redis_lib.Redis, redis_url: str) -> None:
    key = "lb:test:lease:killed"
    redis_client.delete(key)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_forever, args=(redis_url, key, ready))
    holder.start()
    try:
        assert ready.wait(30)
        os.kill(holder.pid, signal.SIGKILL)  # kill -9, as drill a does to a worker mid-flush
        killed = time.monotonic()
        while True:
            with lease(redis_client, key, TTL) as held:
                if held:
                    break
            assert time.monotonic() - killed < TTL + 1.0, "the dead holder's lease did not lapse"
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.join()
