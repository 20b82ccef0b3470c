"""Channel pacing: every alert reserves its own slot, `interval` apart, on the Redis clock shared by all workers."""

from __future__ import annotations

import uuid

import redis

from tasks.alerts import reserve_channel_slot


def test_slots_are_spaced_per_channel_and_free_again_later(redis_client: redis.Redis) -> None:
    channel = f"#sales-{uuid.uuid4().hex[:6]}"
    waits = [reserve_channel_slot(redis_client, channel, 1.0) for _ in range(4)]
    assert waits[0] == 0.0
    for earlier, later in zip(waits, waits[1:]):
        assert 0.95 <= later - earlier <= 1.05
    # Another channel is not held up by this one's queue.
    assert reserve_channel_slot(redis_client, channel + "-other", 1.0) == 0.0
    # A channel with nothing reserved (the key expires once its slots have passed) sends at once.
    redis_client.delete(f"lb:alert:chan:{channel}")
    assert reserve_channel_slot(redis_client, channel, 0.2) == 0.0
