"""Progress counters per pipeline stage, in Redis: what stall detection reads.

Each stage adds what it finished to a counter per 10-second bucket (kept ten minutes), so "how much did
ingest process in the last 60 s" is one MGET, whichever process asks (web, doctor, `run`'s summary).
"""

from __future__ import annotations

import time
from typing import Any

from core.keys import PROGRESS_KEY

BUCKET_SECONDS = 10
KEEP_SECONDS = 600
STAGES = ("ingest", "score", "writeback", "written")  # writeback: leads handled; written: records written


def record_progress(client: Any, stage: str, count: int, now: float | None = None) -> None:
    """Add `count` finished items to `stage`'s current bucket (nothing is written for 0)."""
    if count <= 0:
        return
    key = PROGRESS_KEY.format(stage=stage, bucket=int((now or time.time()) // BUCKET_SECONDS))
    pipe = client.pipeline(transaction=False)
    pipe.incrby(key, count)
    pipe.expire(key, KEEP_SECONDS)
    pipe.execute()


def progress_since(client: Any, stage: str, seconds: float, now: float | None = None) -> int:
    """Items `stage` finished in about the last `seconds` (whole buckets, so up to 10 s more)."""
    now = now or time.time()
    last = int(now // BUCKET_SECONDS)
    first = int((now - seconds) // BUCKET_SECONDS)
    keys = [PROGRESS_KEY.format(stage=stage, bucket=b) for b in range(first, last + 1)]
    return sum(int(v) for v in client.mget(keys) if v is not None)
