"""bench/drift.py --quick end to end: every scenario and strategy, the JSON's keys, finite numbers."""

from __future__ import annotations

import json
import math
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
        assert set(by) == set(drift.STRATEGIES) | {"online_alone"}, scenario
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
    assert set(report["targets"]) == {"sudden", "gradual", "seasonal"}


def test_bad_workers_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert drift.main(["--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
