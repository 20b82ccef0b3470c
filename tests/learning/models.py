"""Small real model bundles for the registry and hot-swap tests (trained once per session)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scoring.features import FIT_FEATURES, build_training_frame
from scoring.registry import ModelRegistry
from scoring.training import TrainOptions, run_experiment
from tests.scoring.events import behaviour_world


def train_bundles(directory: Path, count: int = 2) -> list[dict[str, Any]]:
    """`count` bundles on the declared features, registered under `directory`; their registry rows."""
    events, outcomes = behaviour_world(leads=300)
    frame = build_training_frame(events, outcomes)
    registry = ModelRegistry(directory)
    rows = []
    for i in range(count):
        experiment = run_experiment(frame, TrainOptions(label="won", id_column="lead_id", time_column="as_of",
                                                        fit_columns=FIT_FEATURES), seed=i,
                                    now=datetime(2025, 6, 1, 12, 0, i, tzinfo=UTC))
        rows.append(registry.register(experiment.bundle))
    return rows
