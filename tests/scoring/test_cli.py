"""`leadbridge train` and `leadbridge score` through click's runner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.scoring_commands import score, train


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _train(runner: CliRunner, csv_path: Path, models: Path, *extra: str):
    return runner.invoke(train, ["--csv", str(csv_path), "--label", "converted", "--id", "lead_id",
                                 "--models-dir", str(models), *extra])


def test_train_then_score_writes_scores_grades_reasons(runner, leads_csv, tmp_path) -> None:
    report = tmp_path / "report.json"
    result = _train(runner, leads_csv, tmp_path / "models", "--drop", "status_after_call",
                    "--fit-columns", "industry,title", "--fit-columns", "employees", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output and "logistic regression" in result.output
    data = json.loads(report.read_text())
    assert set(data) >= {"rows", "positives", "version", "dropped_columns", "model", "baselines"}
    assert set(data["baselines"]) == {"logistic_regression", "rules"}
    assert data["rows"] == 600

    rows = list(csv.reader(leads_csv.open()))
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(rows[0])
        writer.writerows(rows[1:11])
        broken = list(rows[11])
        broken[rows[0].index("visits")] = "lots"
        writer.writerow(broken)  # line 12: not a number
        writer.writerow(rows[12][:3])  # line 13: too few fields
        writer.writerow(rows[13])
    out = tmp_path / "out.csv"
    result = runner.invoke(score, ["--csv", str(src), "--out", str(out), "--models-dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert "line 12: column 'visits': 'lots' is not a number" in result.output
    assert "line 13: 3 fields, expected 11" in result.output
    scored = list(csv.DictReader(out.open()))
    assert len(scored) == 12  # 11 good rows + the unreadable-value row (with its error)
    good = [r for r in scored if not r["score_error"]]
    assert len(good) == 11
    assert all(0 <= int(r["score"]) <= 100 and r["grade"] in "ABCDF" and r["reasons"] for r in good)
    assert all(part[:2] in ("+ ", "- ") for r in good for part in r["reasons"].split("; "))
    bad = [r for r in scored if r["score_error"]]
    assert bad[0]["lead_id"] == rows[11][0] and bad[0]["score"] == ""


def test_score_by_version_and_by_path(runner, leads_csv, tmp_path) -> None:
    models = tmp_path / "models"
    assert _train(runner, leads_csv, models, "--drop", "status_after_call").exit_code == 0
    (version,) = [p.name for p in models.iterdir()]
    for ref in (version, str(models / version)):
        out = tmp_path / f"out-{len(ref)}.csv"
        result = runner.invoke(score, ["--csv", str(leads_csv), "--model", ref, "--out", str(out),
                                       "--models-dir", str(models), "--mode", "percentile"])
        assert result.exit_code == 0, result.output
        assert "grades are the score's percentile" in result.output
        assert {r["grade"] for r in csv.DictReader(out.open())} == set("ABCDF")
    result = runner.invoke(score, ["--csv", str(leads_csv), "--model", "v-missing", "--out", str(tmp_path / "x.csv"),
                                   "--models-dir", str(models)])
    assert result.exit_code == 2 and "neither a registered version" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--csv", "missing.csv", "--label", "converted"], "CSV file not found"),
        (["--label", "nope"], "label column 'nope' not found"),
        (["--label", "source"], "label column 'source' is not binary"),
        (["--label", "converted", "--drop", "no_such_column"], "--drop names column(s) not in"),
        (["--label", "converted", "--time", "source"], "most values are not dates"),
    ],
)
def test_train_errors_are_clear_and_nonzero(runner, leads_csv, tmp_path, args, message) -> None:
    base = [] if "--csv" in args else ["--csv", str(leads_csv)]
    result = runner.invoke(train, [*base, *args, "--models-dir", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_score_errors_are_clear(runner, leads_csv, tmp_path) -> None:
    empty_models = tmp_path / "none"
    result = runner.invoke(score, ["--csv", str(leads_csv), "--out", str(tmp_path / "o.csv"),
                                   "--models-dir", str(empty_models)])
    assert result.exit_code == 2 and "no trained model" in result.output
    result = runner.invoke(score, ["--csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o.csv"),
                                   "--models-dir", str(empty_models)])
    assert result.exit_code == 2 and "CSV file not found" in result.output
