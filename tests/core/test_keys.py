"""Redis keys: every string pinned, one home (core.keys), one prefix, and the upgrade that renames old keys."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from connectors.ratelimit import RedisTokenBucket
from core import keys
from scoring.features import RedisFeatureStore

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "bridge", "services", "tasks", "connectors", "scoring", "storage", "cli", "sandbox")

# The exact strings live data is stored under: changing one strands that data (or logs every admin out).
# Only the four leadbridge: families moved (with core.keys.upgrade_key_names); every other string is as before.
PINNED = {
    "DIRTY_KEY": "lb:dirty:{crm}",
    "WRITTEN_KEY": "lb:written:{crm}",
    "INFLIGHT_KEY": "lb:inflight:{crm}",
    "PAUSED_KEY": "lb:paused:{crm}",
    "FLUSH_LOCK_KEY": "lb:flushing:{crm}",
    "ACCOUNT_DIRTY_KEY": "lb:accounts:dirty:{crm}",
    "ACCOUNT_WRITTEN_KEY": "lb:accounts:written:{crm}",
    "ACCOUNT_INFLIGHT_KEY": "lb:accounts:inflight:{crm}",
    "ACCOUNT_ASIDE_KEY": "lb:accounts:aside:{crm}",
    "ACCOUNT_FLUSH_LOCK_KEY": "lb:accounts:flushing:{crm}",
    "ACCOUNT_VERSION_KEY": "lb:accounts:model_version",
    "RECONCILED_KEY": "lb:reconciled:{crm}:{lead}",
    "SCORE_ASIDE_KEY": "lb:aside:score",
    "WRITEBACK_ASIDE_KEY": "lb:aside:writeback:{crm}",
    "PROGRESS_KEY": "lb:progress:{stage}:{bucket}",
    "ENRICHED_KEY": "lb:enriched:{crm}:{ref}",
    "RESCORED_KEY": "lb:rescored:{lead}",
    "REENRICHED_KEY": "lb:reenriched:{lead}",
    "FEATURE_STREAM_KEY": "lb:fs:s:{lead}:{stream}",
    "FEATURE_ACTIVITY_KEY": "lb:fs:a:{lead}",
    "FEATURE_TRAITS_KEY": "lb:fs:t:{lead}",
    "ACCOUNT_ENGAGED_KEY": "lb:fs:acct:{account}",
    "FEATURE_SCHEMA_KEY": "lb:schema:version",
    "PILOT_KEY": "lb:pilot:version",
    "BANDS_KEY": "lb:bands:cutoffs",
    "CHAMPION_KEY": "lb:model:champion",
    "OUTCOMES_SINCE_KEY": "lb:learning:outcomes_since:{crm}",
    "RETRAIN_LOCK_KEY": "lb:learning:retrain_lock",
    "DRIFT_RETRAIN_KEY": "lb:learning:drift_retrain",
    "ONLINE_SERVING_KEY": "lb:model:online",
    "ONLINE_LOCK_KEY": "lb:learning:online_lock",
    "ONLINE_SEEN_KEY": "lb:learning:online_seen",
    "ADWIN_RETRAIN_KEY": "lb:learning:adwin_retrain",
    "ALERT_COOLDOWN_KEY": "lb:alert:cool:{rule}:{lead}",
    "ALERT_CHANNEL_KEY": "lb:alert:chan:{channel}",
    "ACTION_TURN_KEY": "lb:action:turn:{rule}:{index}",
    "SESSION_KEY": "lb:session:{digest}",
    "LOGIN_FAILURES_ACCOUNT_KEY": "lb:login-failures:account:{digest}",
    "LOGIN_FAILURES_ADDRESS_KEY": "lb:login-failures:address:{address}",
    "RATELIMIT_KEY": "lb:ratelimit:{bucket}",
    "HEARTBEAT_KEY": "lb:beat:heartbeat",
    "SECRET_ONCE_KEY": "lb:secret-once:{digest}:{source}",
}
KEY_LITERAL = re.compile(r"^(lb|leadbridge):(\S|$)")


def test_every_key_template_is_pinned() -> None:
    assert keys.templates() == PINNED
    assert (keys.PREFIX, keys.FEATURES_PREFIX, keys.RATELIMIT_PREFIX) == ("lb:", "lb:fs", "lb:ratelimit:")
    assert keys.RENAMED_PREFIXES == {"leadbridge:session:": "lb:session:",
                                     "leadbridge:login-failures:": "lb:login-failures:",
                                     "leadbridge:ratelimit:": "lb:ratelimit:",
                                     "leadbridge:beat:heartbeat": "lb:beat:heartbeat"}


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            found.append((node.lineno, str(node.values[0].value)))  # an f-string's leading text
    return found


def test_no_key_literal_outside_core_keys() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "core" / "keys.py":
                continue
            for line, text in _string_literals(ast.parse(path.read_text(encoding="utf-8"))):
                if KEY_LITERAL.match(text):
                    offenders.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert offenders == [], "Redis keys belong in core/keys.py:\n" + "\n".join(offenders)


def test_key_constants_are_imported_from_core_keys_only() -> None:
    """A key imported through another module is a second home (and was the tasks.score <-> writeback cycle)."""
    names = set(keys.templates()) | {"FEATURES_PREFIX", "RATELIMIT_PREFIX", "LEAD_MEMBER_KEYS"}
    offenders = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module != "core.keys":
                    wrong = sorted(a.name for a in node.names if a.name in names)
                    if wrong:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {wrong} from {node.module}")
    assert offenders == []


def test_the_feature_store_and_rate_limit_build_the_pinned_keys(redis_client: Any) -> None:
    store = RedisFeatureStore(redis_client)
    assert store._stream_key("7", "web") == keys.FEATURE_STREAM_KEY.format(lead="7", stream="web")
    assert store._activity_key("7") == keys.FEATURE_ACTIVITY_KEY.format(lead="7")
    assert store._traits_key("7") == keys.FEATURE_TRAITS_KEY.format(lead="7")
    assert f"{store.prefix}:acct:" == keys.prefix_of(keys.ACCOUNT_ENGAGED_KEY)  # built in its Lua scripts
    assert RedisTokenBucket(redis_client, "hubspot:42").key == "lb:ratelimit:hubspot:42"


def test_upgrade_renames_old_keys_keeping_ttl_and_is_idempotent(redis_client: Any) -> None:
    old_session, new_session = "leadbridge:session:abc", "lb:session:abc"
    redis_client.delete(old_session, new_session, "leadbridge:beat:heartbeat", "lb:beat:heartbeat",
                        "leadbridge:ratelimit:hubspot:1", "lb:ratelimit:hubspot:1",
                        "leadbridge:login-failures:address:1.2.3.4", "lb:login-failures:address:1.2.3.4")
    redis_client.hset(old_session, mapping={"user_id": 1, "created": 5})
    redis_client.expire(old_session, 3600)
    redis_client.set("leadbridge:beat:heartbeat", "123.0", ex=300)
    redis_client.hset("leadbridge:ratelimit:hubspot:1", mapping={"tokens": "3", "ts": "1"})
    redis_client.set("leadbridge:login-failures:address:1.2.3.4", 2)
    # A newer value already under the new name wins: the old one is left, not written over it.
    redis_client.set("lb:login-failures:address:1.2.3.4", 4)
    try:
        assert keys.upgrade_key_names(redis_client) == 3
        assert redis_client.hgetall(new_session) == {b"user_id": b"1", b"created": b"5"}
        assert 3500 < redis_client.ttl(new_session) <= 3600
        assert 0 < redis_client.ttl("lb:beat:heartbeat") <= 300
        assert redis_client.ttl("lb:ratelimit:hubspot:1") == -1  # no TTL stays no TTL
        assert redis_client.get("lb:login-failures:address:1.2.3.4") == b"4"
        assert redis_client.exists(old_session, "leadbridge:beat:heartbeat", "leadbridge:ratelimit:hubspot:1") == 0
        assert keys.upgrade_key_names(redis_client) == 0  # run again (every start-up): nothing to do
    finally:
        redis_client.delete(old_session, new_session, "lb:beat:heartbeat", "lb:ratelimit:hubspot:1",
                            "leadbridge:login-failures:address:1.2.3.4", "lb:login-failures:address:1.2.3.4")
