"""Every Redis key leadbridge writes, under one prefix `lb:`: templates for `str.format`.

One home so a key cannot be defined twice or drift between its writer and its readers, and so
storage.privacy derives its purge from here (a renamed key cannot silently escape it). Placeholders
are named by what they hold; `{lead}` is always a lead id and `{ref}` a person reference (a CRM id or
an e-mail): the purge finds per-person keys by these two names. tests/core/test_keys.py pins every string.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

log = logging.getLogger(__name__)

PREFIX = "lb:"

# --- pipeline: scoring and writeback ----------------------------------------------------------------
# Set of lead ids whose CRM fields need writing: tasks.score, repairs and retries add; tasks.writeback drains.
DIRTY_KEY = PREFIX + "dirty:{crm}"
# Hash lead id -> fingerprint of the values last written to the CRM; tasks.writeback writes it after a batch.
WRITTEN_KEY = PREFIX + "written:{crm}"
# Hash lead id -> {"crm_id", "fp", "values"} of a write sent to the CRM whose outcome is not recorded yet;
# tasks.writeback sets it before the CRM call and clears it when the outcome is recorded.
INFLIGHT_KEY = PREFIX + "inflight:{crm}"
# String (the CRM's complaint) set by tasks.writeback while the CRM refuses our credentials; expires.
PAUSED_KEY = PREFIX + "paused:{crm}"
# Lock held by the one running tasks.writeback flush per CRM (a lease).
FLUSH_LOCK_KEY = PREFIX + "flushing:{crm}"
# Repair claim set by tasks.writeback.reconcile_writes while a re-marked lead waits for its write.
RECONCILED_KEY = PREFIX + "reconciled:{crm}:{lead}"
# Set of lead ids whose scoring is a dead letter (tasks.score adds); skipped until an admin retries/discards.
SCORE_ASIDE_KEY = PREFIX + "aside:score"
# Hash lead id -> fingerprint of values the CRM refused (tasks.writeback); held back until an admin acts.
WRITEBACK_ASIDE_KEY = PREFIX + "aside:writeback:{crm}"
# Account scores take the same outbox under keys of their own (tasks.writeback.ACCOUNTS): the lead keys above
# hold lead ids, and a forgotten person's lead id is removed from them, never an account's.
ACCOUNT_DIRTY_KEY = PREFIX + "accounts:dirty:{crm}"
ACCOUNT_WRITTEN_KEY = PREFIX + "accounts:written:{crm}"
ACCOUNT_INFLIGHT_KEY = PREFIX + "accounts:inflight:{crm}"
ACCOUNT_ASIDE_KEY = PREFIX + "accounts:aside:{crm}"
ACCOUNT_FLUSH_LOCK_KEY = PREFIX + "accounts:flushing:{crm}"
# The model version account scores show (tasks.learning sets it when it scores accounts).
ACCOUNT_VERSION_KEY = PREFIX + "accounts:model_version"
# Counters of items each stage finished per 10-second bucket (core.progress); what stall detection reads.
PROGRESS_KEY = PREFIX + "progress:{stage}:{bucket}"

# --- ingest and repairs -----------------------------------------------------------------------------
# Marker that tasks.ingest enriched a person from the CRM (keyed by HubSpot id or e-mail); repairs delete it.
ENRICHED_KEY = PREFIX + "enriched:{crm}:{ref}"
# Repair claims of tasks.maintenance: a lead re-scored / re-enriched recently is not repaired again.
RESCORED_KEY = PREFIX + "rescored:{lead}"
REENRICHED_KEY = PREFIX + "reenriched:{lead}"

# --- online features (scoring.features.RedisFeatureStore, written by tasks.ingest) -------------------
FEATURES_PREFIX = PREFIX + "fs"
# Sorted set of a lead's event ids in one stream, by occurred_at ms.
FEATURE_STREAM_KEY = FEATURES_PREFIX + ":s:{lead}:{stream}"
# Sorted set of all of a lead's event ids, by occurred_at ms.
FEATURE_ACTIVITY_KEY = FEATURES_PREFIX + ":a:{lead}"
# Hash of a lead's traits (name, title, company, e-mail domain ...) with their write order.
FEATURE_TRAITS_KEY = FEATURES_PREFIX + ":t:{lead}"
# Sorted set of the lead ids engaged at one account, by last activity.
ACCOUNT_ENGAGED_KEY = FEATURES_PREFIX + ":acct:{account}"
# The feature schema version in force (storage.feature_schema publishes it after a save); workers compare it per
# batch and reload the schema (the CRM properties mapped to features) only when it moved.
FEATURE_SCHEMA_KEY = PREFIX + "schema:version"
# A counter services.pilots increments after each pilot start, pause, resume or end (storage.pilots): workers
# compare it per batch and re-read the running pilot (whose new leads get a control/pilot group) when it moved.
PILOT_KEY = PREFIX + "pilot:version"

# The score bands' cut-offs in force (JSON: band set version, mode, [[name, lowest score]], shares, leads, when):
# tasks.bands recomputes them from the last 7 days' scores (beat, and on every band change); writeback reads
# them once per batch, so no lead ever queries the score history.
BANDS_KEY = PREFIX + "bands:cutoffs"

# --- learning and the model -------------------------------------------------------------------------
# The champion model's version: storage.model_registry's promote/rollback set it; workers watch it (hot-swap).
CHAMPION_KEY = PREFIX + "model:champion"
# Outcomes seen since the last retrain, per CRM (tasks.learning counts them to decide a retrain).
OUTCOMES_SINCE_KEY = PREFIX + "learning:outcomes_since:{crm}"
# Lock held by the one running retrain (tasks.learning).
RETRAIN_LOCK_KEY = PREFIX + "learning:retrain_lock"
# Marker that a drift report already asked for a retrain (tasks.learning); expires.
DRIFT_RETRAIN_KEY = PREFIX + "learning:drift_retrain"
# The online learner's snapshot that scorers blend with the champion, and its weight, as JSON
# {"version", "weight"}; absent while the champion serves alone. The learner (tasks.online_learning) re-publishes
# it on every run, so a Redis that lost it serves the champion alone for one run at most.
ONLINE_SERVING_KEY = PREFIX + "model:online"
# Lock held by the one running online-learning pass (tasks.online_learning).
ONLINE_LOCK_KEY = PREFIX + "learning:online_lock"
# What the last online-learning pass saw (newest outcome id, leads old enough to have matured): a pass that
# finds the same skips its work, so an install without new outcomes pays one query every five minutes.
ONLINE_SEEN_KEY = PREFIX + "learning:online_seen"
# Marker that an ADWIN change already asked for a retrain (tasks.online_learning); expires.
ADWIN_RETRAIN_KEY = PREFIX + "learning:adwin_retrain"

# --- alerts -----------------------------------------------------------------------------------------
# Cooldown of one alert rule for one lead (tasks.alerts); expires after the rule's cooldown.
ALERT_COOLDOWN_KEY = PREFIX + "alert:cool:{rule}:{lead}"
# The next free send slot of one Slack channel (tasks.alerts pacing).
ALERT_CHANNEL_KEY = PREFIX + "alert:chan:{channel}"
# Counter of one rule action's round robin (tasks.actions, crm_owner): each crossing takes the next turn once.
ACTION_TURN_KEY = PREFIX + "action:turn:{rule}:{index}"

# --- web, CRM budget, processes ---------------------------------------------------------------------
# An admin session (bridge.security), named by the SHA-256 of its id; expires when idle.
SESSION_KEY = PREFIX + "session:{digest}"
# Failed log-ins counted per account (hashed e-mail) and per address (bridge.security); expire.
LOGIN_FAILURES_ACCOUNT_KEY = PREFIX + "login-failures:account:{digest}"
LOGIN_FAILURES_ADDRESS_KEY = PREFIX + "login-failures:address:{address}"
# A CRM account's shared request budget (connectors.ratelimit token bucket), e.g. bucket "hubspot:<portal>".
RATELIMIT_PREFIX = PREFIX + "ratelimit:"
RATELIMIT_KEY = RATELIMIT_PREFIX + "{bucket}"
# A source secret just created or rotated (encrypted), kept for the one page that shows it to the admin's session
# (bridge.admin sources views, `{digest}` the session's); deleted when shown, expires after 10 minutes.
SECRET_ONCE_KEY = PREFIX + "secret-once:{digest}:{source}"
# Time of the last heartbeat task run (beat sends it, a worker runs it); the overview and doctor read it.
HEARTBEAT_KEY = PREFIX + "beat:heartbeat"

# Keys that hold lead ids among other leads' (set members, hash fields, sorted-set members).
LEAD_MEMBER_KEYS = (DIRTY_KEY, WRITTEN_KEY, INFLIGHT_KEY, SCORE_ASIDE_KEY, WRITEBACK_ASIDE_KEY,
                    ACCOUNT_ENGAGED_KEY)

# Names before the one prefix (old -> new): upgrade_key_names renames live keys to their new names.
RENAMED_PREFIXES = {
    "leadbridge:session:": PREFIX + "session:",
    "leadbridge:login-failures:": PREFIX + "login-failures:",
    "leadbridge:ratelimit:": RATELIMIT_PREFIX,
    "leadbridge:beat:heartbeat": HEARTBEAT_KEY,
}


def templates() -> dict[str, str]:
    """Every key template of this module by constant name (what tests and the privacy purge read)."""
    return {name: value for name, value in globals().items()
            if name.endswith("_KEY") and isinstance(value, str)}


def prefix_of(template: str) -> str:
    """The fixed part of `template` before its first placeholder (the whole key when it has none)."""
    return template.split("{", 1)[0]


def upgrade_key_names(redis: Any) -> int:
    """Rename keys still under an old name to the current one, keeping their TTL; returns keys renamed.

    Idempotent: a key whose new name already exists is left alone (the new one is the live one), so
    running it at every start-up is harmless. RENAMENX keeps the TTL and is atomic per key.
    """
    renamed = 0
    for old_prefix, new_prefix in RENAMED_PREFIXES.items():
        for raw in redis.scan_iter(match=old_prefix + "*", count=1000):
            old = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                renamed += int(bool(redis.renamenx(old, new_prefix + old.removeprefix(old_prefix))))
            except ResponseError as exc:  # it expired between SCAN and RENAMENX: nothing to keep
                if "no such key" not in str(exc).lower():
                    raise
    if renamed:
        log.info("redis.keys_renamed", extra={"count": renamed})
    return renamed
