"""bench/drift.py --quick end to end: every scenario and strategy, the JSON's keys, finite numbers."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from bench import drift


@pytest.mark.slow
def test_quick_run_writes_every_scenario_and_strategy(tmp_path: Path) -> None:
    out = tmp_path / "drift.json"
    assert drift.main(["--quick", "--workers", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["scenarios"]) == set(drift.SCENARIOS)
    for scenario, by in report["scenarios"].items():
        assert set(by) == set(drift.STRATEGIES) | {"online_alone"} | set(drift.ALIASES), scenario
        assert by["hybrid"] == by["shipped"]  # the old key, kept as an alias of what ships
        for name, entry in by.items():
            for key in ("lowest_auc", "final_auc", "retrainings"):
                assert isinstance(entry[key], (int, float)) and math.isfinite(entry[key]), (scenario, name, key)
                assert len(entry["per_seed"][key]) == len(entry["seeds"]) == 1
            assert 0.0 < entry["final_auc"] <= 1.0 and 0.0 < entry["lowest_auc"] <= 1.0
            # recovery_days is a number of days, or null when a seed never came back within the tolerance
            assert entry["recovery_days"] is None or entry["recovery_days"] >= 0
        assert by["online"]["retrainings"] == 0 and by["static"]["retrainings"] == 0
        assert by["online_alone"]["retrainings"] == 0 and 0.0 <= by["online"]["serving_share"] <= 1.0
        # The product's gate serves the blend only while it wins; otherwise online is static exactly.
        if by["online"]["serving_share"] == 0.0:
            assert by["online"]["final_auc"] == by["static"]["final_auc"]
        assert by["weekly"]["retrainings"] >= 1
        # What ships retrains as adwin does (the blend never feeds ADWIN or promotion); it serves adwin's champion
        # as it is on the days the gate keeps the blend off.
        assert by["shipped"]["per_seed"]["retrainings"] == by["adwin"]["per_seed"]["retrainings"]
        assert 0.0 <= by["shipped"]["serving_share"] <= 1.0
        if by["shipped"]["serving_share"] == 0.0:
            assert by["shipped"]["final_auc"] == by["adwin"]["final_auc"]
        assert "edr" not in by  # optional: only with --edr
    assert set(report["targets"]) == {"sudden", "gradual", "seasonal"}
    assert not report["edr"]


def test_bad_workers_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert drift.main(["--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_shipped_serves_adwins_champions_through_the_gate() -> None:
    """gated_arm keeps the champions' history and retrainings and sets the weights the product's gate sets."""
    champions = drift.Arm("adwin", history=[], retrainings=[{"day": 40, "reason": "adwin"}])
    stream = drift.Stream(start=datetime(2024, 1, 1), known={}, arrivals={1: [], 2: []}, tested=[], last_day=2)
    arm, gaps = drift.gated_arm("shipped", champions, stream, drift.FeatureCache(None), {})  # type: ignore[arg-type]
    assert arm.name == "shipped" and arm.retrainings == champions.retrainings and arm.history == champions.history
    assert arm.retrainings is not champions.retrainings
    assert arm.blend_weights == [(datetime(2024, 1, 2), 0.0)] and gaps == []  # no labels: the gate keeps it off
