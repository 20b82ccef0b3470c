"""Compact JSON for the webhook hot path: orjson when it can encode the value, the standard library otherwise."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Encode compactly (no spaces); values JSON has no type for become str(value), as with default=str."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS | orjson.OPT_SORT_KEYS if sort_keys else _OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # orjson refuses integers beyond 64 bits (valid JSON a vendor may send); the standard library does not.
        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, default=str, ensure_ascii=False)
