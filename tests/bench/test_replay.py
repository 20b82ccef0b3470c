"""bench/replay.py end to end on a small synthetic CSV: sandbox CRM -> webhooks -> leadbridge -> CRM fields."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import replay


def synthetic_csv(path: Path, rows: int = 400, seed: int = 3) -> Path:
    """Leads whose conversion depends on a plan (categorical) and a visit count (numeric), plus noise columns."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["Starter", "Team", "Enterprise"], size=rows, p=[0.5, 0.3, 0.2])
    visits = rng.poisson(4, size=rows)
    logit = -2.0 + np.select([plan == "Team", plan == "Enterprise"], [1.8, 3.4], 0.0) + 0.6 * (visits - 4)
    won = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({
        "Lead Id": [f"L{i:05d}" for i in range(rows)],
        "Plan Type": plan,
        "Website Visits": visits,
        "Newsletter": rng.choice(["Yes", "No"], size=rows),
        "Region": rng.choice(["North", "South", "East", "West"], size=rows),
        "Converted": won.astype(int),
    })
    frame.to_csv(path, index=False)
    return path


def test_bad_csv_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main(["--csv", str(tmp_path / "missing.csv")]) == 2
    assert "CSV file not found" in capsys.readouterr().out
    path = synthetic_csv(tmp_path / "leads.csv", rows=60)
    assert replay.main(["--csv", str(path), "--label", "Plan Type"]) == 2
    assert "is not binary" in capsys.readouterr().out
    assert replay.main(["--csv", str(path), "--drop", "Nope"]) == 2
    assert "Nope" in capsys.readouterr().out
    assert replay.main(["--csv", str(path), "--fit", "Not A Column"]) == 2
    assert "Not A Column" in capsys.readouterr().out


def test_open_rows_are_left_out(tmp_path: Path) -> None:
    path = synthetic_csv(tmp_path / "leads.csv", rows=100)
    frame = pd.read_csv(path)
    frame["Stage"] = np.where(frame["Converted"] == 1, "Won", "Lost")
    frame.loc[:9, "Stage"] = "Engaging"
    frame.drop(columns=["Converted"]).to_csv(path, index=False)
    args = ["--csv", str(path), "--id", "Lead Id", "--label", "Stage"]
    with pytest.raises(replay.ReplayError, match="not binary"):
        replay.load(replay.parse_args(args))
    data = replay.load(replay.parse_args([*args, "--open", "Engaging"]))
    assert len(data.frame) == 90 and "Engaging" not in set(data.frame["Stage"])


def test_columns_become_typed_properties(tmp_path: Path) -> None:
    path = synthetic_csv(tmp_path / "leads.csv", rows=100)
    data = replay.load(replay.parse_args(["--csv", str(path), "--id", "Lead Id"]))
    kinds = {c.column: (c.name, c.kind, c.hs_type) for c in data.columns}
    assert kinds == {"Plan Type": ("plan_type", "categorical", "enumeration"),
                     "Website Visits": ("website_visits", "numeric", "number"),
                     "Newsletter": ("newsletter", "boolean", "bool"),
                     "Region": ("region", "categorical", "enumeration")}
    assert len(data.test_idx) == 20 and not set(data.test_idx) & set(data.train_idx)
    newsletter = next(c for c in data.columns if c.column == "Newsletter")
    assert (newsletter.value("Yes"), newsletter.value("no"), newsletter.value(float("nan"))) == ("true", "false", None)


@pytest.mark.slow
def test_replay_scores_held_out_contacts_like_the_offline_model(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # 320 history rows are fewer outcomes than the product's default minimum for replacing the rules.
    monkeypatch.setenv("LEADBRIDGE_MIN_OUTCOMES", "100")
    path = synthetic_csv(tmp_path / "leads.csv")
    out = tmp_path / "replay.json"
    assert replay.main(["--csv", str(path), "--id", "Lead Id", "--seed", "1", "--json", str(out),
                        "--timeout", "300", "--fit", "Plan Type"]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 400 and report["rows_test"] == 80
    assert report["lost"] == 0
    assert report["graded_share"] == 1.0 and report["reasons_share"] >= 0.99
    # The plan is a fit field: the grades (its fit model) rank held-out conversion.
    assert {m["property"]: m["fit"] for m in report["schema"]["mapped"]}["plan_type"] is True
    conversion = [row["conversion"] for row in report["grade_conversion"].values()]
    assert len(conversion) >= 2 and conversion[0] > conversion[-1]
    assert report["offline_auc"] > 0.7
    assert abs(report["live_auc"] - report["offline_auc"]) < 0.05
    assert report["p95_ms"] is not None and report["p95_ms"] > 0


def test_x_education_defaults_map_who_the_lead_is_as_fit(tmp_path: Path) -> None:
    if not replay.DEFAULT_CSV.is_file():
        pytest.skip("the X Education file is not next to the repository")
    data = replay.load(replay.parse_args([]))
    assert data.fit == list(replay.DEFAULT_FIT)
    path = synthetic_csv(tmp_path / "leads.csv", rows=60)
    assert replay.load(replay.parse_args(["--csv", str(path)])).fit == []


def test_history_keeps_the_time_columns_spacing(tmp_path: Path) -> None:
    path = synthetic_csv(tmp_path / "leads.csv", rows=100)
    frame = pd.read_csv(path)
    frame["Created"] = pd.date_range("2016-01-01", periods=len(frame), freq="D").strftime("%Y-%m-%d")
    frame.to_csv(path, index=False)
    data = replay.load(replay.parse_args(["--csv", str(path), "--id", "Lead Id", "--time", "Created"]))
    now = 2_000_000_000.0
    times = replay.history_times(data, now, np.random.default_rng(0))
    # The 80 oldest rows, one day apart, end before the maturity window (pandas 3 parses dates to microseconds).
    assert times.max() == pytest.approx(now - (replay.MATURITY_DAYS + 5) * 86400)
    assert times.max() - times.min() == pytest.approx(79 * 86400)
