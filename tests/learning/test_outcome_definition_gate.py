"""The promotion gate compares models only under one outcome definition: after the definition changes, the
challenger is judged against the rules (the old champion is not compared), and each model records its definition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from scoring.champion import definition_mismatch
from storage.bands import save_outcome_rule
from storage.db import Database
from storage.models import ModelVersion, OutcomeDefinition
from tasks.learning import retrain_from_events
from tasks.online_learning import label_definition
from tests.learning.conftest import DAY, T0, store_world, world_events
from tests.learning.test_retrain import config


@pytest.fixture()
def no_definitions(clean: Database) -> Iterator[Database]:
    """`clean`, with no saved outcome definition before or after."""
    with clean.session() as session:
        session.execute(delete(OutcomeDefinition))
    yield clean
    with clean.session() as session:
        session.execute(delete(OutcomeDefinition))


def test_definition_mismatch_names_both_versions() -> None:
    assert definition_mismatch(3, 3) is None
    assert definition_mismatch(2, 1) == ("the champion was trained under outcome definition v1, the challenger "
                                         "under v2: not compared")


def test_the_gate_never_compares_across_definitions(no_definitions: Database, redis_client: Any,
                                                    tmp_path: Path) -> None:
    db = no_definitions
    events, outcomes = world_events(leads=400)
    store_world(db, events, outcomes)
    now = T0 + 150 * DAY
    first = retrain_from_events(db, redis_client, config(tmp_path), now=now)
    assert first.status == "promoted", first.reason
    # A new definition (v1): the next challenger learns labels the champion (v0) never saw; an impossible margin
    # would keep it against the champion, so the rules being the bar is what shows in the decision.
    with db.session(write=True) as session:
        save_outcome_rule(session, "hubspot", {"lifecycle_stage": "salesqualifiedlead", "lead_status": [],
                                               "deal_won": True}, "admin@example.com")
    second = retrain_from_events(db, redis_client, config(tmp_path), now=now + DAY, reason="outcome_definition")
    name = second.decision["champion_name"]
    assert name.startswith("rules (") and "outcome definition v0" in name and "under v1: not compared" in name
    assert f"champion {first.version}" not in second.reason
    assert second.status == "promoted", second.reason
    # Under one definition again: the newest champion is the bar.
    third = retrain_from_events(db, redis_client, config(tmp_path, promotion_margin=0.5), now=now + 2 * DAY)
    assert third.decision["champion_name"] == f"champion {second.version}" and third.status == "kept"
    with db.session() as session:
        params = {r.version: r.params.get("outcome_definition") for r in session.scalars(select(ModelVersion))}
    assert params == {first.version: 0, second.version: 1, third.version: 1}


def test_the_online_learner_is_rebuilt_under_a_new_definition() -> None:
    cfg = config(Path("."))
    assert label_definition(cfg) == "maturity=30d gap=24h"
    assert label_definition(cfg, 2) == "maturity=30d gap=24h outcomes=v2"


def test_the_online_gate_compares_only_under_the_definition_in_force(no_definitions: Database, redis_client: Any,
                                                                   tmp_path: Path) -> None:
    import numpy as np

    from storage.models import PrequentialScore
    from storage.prequential import add_scores
    from tasks.online_learning import _apply_gate
    from tests.learning.test_online_live import config as online_config
    from tests.learning.test_online_live import scored

    db = no_definitions
    events, outcomes = world_events(leads=400)
    leads = store_world(db, events, outcomes)
    cfg = online_config(tmp_path)
    assert retrain_from_events(db, redis_client, cfg, now=T0 + 60 * DAY).status == "promoted"

    def blend_wins() -> None:
        """Champion and blend scores on 300 labels where the blend clearly wins (recorded now)."""
        with db.session(write=True) as session:
            session.execute(delete(PrequentialScore))
            ids = sorted(leads.values())[:300]
            rng = np.random.default_rng(1)
            y = rng.random(300) < 0.4
            add_scores(session, scored("champion", [
                (ids[i], float(0.5 + 0.1 * (y[i] - 0.5) + 0.2 * (rng.random() - 0.5)), bool(y[i])) for i in range(300)]))
            add_scores(session, scored("blend", [
                (ids[i], float(0.5 + 0.3 * (y[i] - 0.5) + 0.1 * (rng.random() - 0.5)), bool(y[i])) for i in range(300)]))

    blend_wins()
    assert _apply_gate(db, redis_client, cfg, "snap-1", actor="test", now=T0 + 151 * DAY)["serve"]
    # A new definition: the champion (trained under v0) is not compared, and the blend stops serving.
    with db.session(write=True) as session:
        save_outcome_rule(session, "salesforce", {"lead_converted": True, "lead_status": ["Qualified"],
                                                  "opportunity_won": True}, "admin@example.com")
    stale = _apply_gate(db, redis_client, cfg, "snap-1", actor="test", now=T0 + 152 * DAY)
    assert not stale["serve"] and "trained under outcome definition v0" in stale["reason"]
    assert "waits for a champion trained under v1" in stale["reason"]
    # A champion under v1: the labels recorded before the change are not compared either...
    assert retrain_from_events(db, redis_client, cfg, now=T0 + 61 * DAY).status == "promoted"
    before = _apply_gate(db, redis_client, cfg, "snap-1", actor="test", now=T0 + 153 * DAY)
    assert not before["serve"] and before["labels"] == 0
    # ...while those recorded under it are.
    blend_wins()
    assert _apply_gate(db, redis_client, cfg, "snap-1", actor="test", now=T0 + 154 * DAY)["serve"]
