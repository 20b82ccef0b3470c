"""From events to a trained model and back: the live pipeline's scoring path end to end."""

from __future__ import annotations

from datetime import timedelta

from scoring.features import FIT_FEATURES, RedisFeatureStore, build_training_frame
from scoring.scorer import Scorer, score
from scoring.training import TrainOptions, run_experiment
from tests.scoring.events import T0, behaviour_world


def test_events_train_a_model_that_scores_online_features_with_readable_reasons(redis_client) -> None:
    events, outcomes = behaviour_world()
    frame = build_training_frame(events, outcomes)
    assert len(frame) == len(outcomes) and frame["won"].isin([0, 1]).all()
    # Point in time: no lead has activity after its own outcome in its training row.
    assert (frame["days_since_last_activity"].dropna() >= 0).all()
    exp = run_experiment(frame, TrainOptions(label="won", id_column="lead_id", time_column="as_of",
                                             fit_columns=FIT_FEATURES))
    assert exp.metrics["roc_auc"] > 0.7
    bundle = exp.bundle

    store = RedisFeatureStore(redis_client)
    store.apply_many(sorted(events, key=lambda e: e.occurred_at))
    now = T0 + timedelta(days=30)
    leads = [f"w{i}" for i in range(40)]
    vectors = store.get_online(leads, as_of=now)
    scores = [score(v, bundle, feature_time=now) for v in vectors]
    assert all(0 <= s.value <= 100 and s.grade in {"A", "B", "C", "D", "F"} for s in scores)
    reasons = " | ".join(r for s in scores for r in s.reasons)
    assert "viewed pricing" in reasons and ("in 30 days" in reasons or "in 7 days" in reasons)
    assert "e-mail domain" in reasons or " title" in reasons
    # The declared templates are used, not raw column dumps.
    assert "pricing_views" not in reasons

    # With too few outcomes for the configured minimum, the rules serve instead.
    cold = Scorer(bundle, min_outcomes=10_000)
    assert cold.using_rules and cold.score(vectors[0]).model_version.startswith("rules:")
