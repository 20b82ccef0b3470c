"""Every scored lead gets a grade A-F and at least one reason; reasons read naturally and name real effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.features import FIT_FEATURES, build_training_frame
from scoring.model import GRADES, ModelBundle
from scoring.phrasing import (
    Phrasing,
    describe_age,
    describe_category,
    describe_missing,
    describe_numeric,
    format_number,
    humanise,
)
from scoring.reasons import (
    BASE_RATE_REASON,
    MIN_EFFECT,
    describe_feature,
    reasons_for,
    reasons_for_batch,
    render,
    top_contributions,
    top_contributions_batch,
)
from scoring.rules import COLD_START_RULES, PointsModel, Rule
from scoring.scorer import BatchScores, Scorer, score, score_frame
from scoring.tabular import Preprocessor
from scoring.training import TrainOptions, report_of, run_experiment
from tests.scoring.events import behaviour_world

# ---- the invariant, checked against the contributions themselves --------------------------------


def assert_graded_and_explained(bundle: ModelBundle, frame: pd.DataFrame, batch: BatchScores) -> None:
    """Each row: a grade in A-F, >= 1 reason, and every reason is the phrase of a feature that moved this score."""
    pre = bundle.main.pre
    X = pre.transform(frame)
    contribs = bundle.main.contributions(X, "xgboost")  # XGBoost's own TreeSHAP, not the code under test
    book = bundle.phrasing
    assert len(batch.grades) == len(frame) and set(batch.grades) <= set(GRADES)
    for r, reasons in enumerate(batch.reasons):
        assert reasons, f"row {r} has no reason"
        moved = np.flatnonzero(contribs[r, :-1])
        if reasons == (BASE_RATE_REASON,):
            assert moved.size == 0
            continue
        phrases = set()
        for i in moved:
            sign = "+" if contribs[r, i] > 0 else "-"
            phrases.add(render(sign, describe_feature(pre, int(i), float(X[r, i]), sign, book)))
        assert set(reasons) <= phrases, (r, set(reasons) - phrases)


# ---- top contributions --------------------------------------------------------------------------


def test_the_strongest_contribution_is_a_reason_even_below_the_noise_floor() -> None:
    tiny = np.array([0.004, -0.009, 0.0, 0.002, 0.5])  # last = bias
    assert top_contributions(tiny) == ([], [1])
    pos, neg = top_contributions_batch(tiny[None, :])
    assert pos[0].tolist() == [-1, -1, -1] and neg[0].tolist() == [1, -1, -1]
    # Above the floor, the floor trims as before: the 0.004 and 0.002 are not reasons next to a 0.3.
    mixed = np.array([0.004, 0.3, 0.002, -0.009, 0.0])
    assert top_contributions(mixed) == ([1], [])


def test_zero_contributions_are_never_reasons_and_all_zero_reads_as_the_base_rate() -> None:
    zeros = np.zeros(5)
    assert top_contributions(zeros, min_effect=0.0) == ([], [])
    pos, neg = top_contributions_batch(np.vstack([zeros, [0.0, 0.2, 0.0, 0.0, 1.0]]), min_effect=0.0)
    assert (pos[0] < 0).all() and (neg[0] < 0).all()
    assert pos[1].tolist() == [1, -1, -1] and (neg[1] < 0).all()
    frame = pd.DataFrame({"Lead Source": ["Google", "Reference"] * 10, "TotalVisits": range(20)})
    pre = Preprocessor.fit(frame)
    X = pre.transform(frame)
    assert reasons_for(pre, X[0], np.zeros(3)) == (BASE_RATE_REASON,)
    assert reasons_for_batch(pre, X[:2], np.zeros((2, 3))) == [(BASE_RATE_REASON,)] * 2
    assert reasons_for(pre, X[1], np.array([0.0, -0.3, 0.1])) == ("- 1 visit",)


def test_batch_and_single_row_choices_agree() -> None:
    rng = np.random.default_rng(4)
    contribs = rng.normal(0, 0.02, size=(300, 8)) * (rng.random((300, 8)) < 0.5)
    pos, neg = top_contributions_batch(contribs)
    for r in range(len(contribs)):
        p, n = top_contributions(contribs[r])
        assert [i for i in pos[r] if i >= 0] == p and [i for i in neg[r] if i >= 0] == n
        assert p or n or not contribs[r, :-1].any()
        assert all(abs(contribs[r, i]) >= MIN_EFFECT for i in (p + n)[1:])


# ---- phrasing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "words"), [
    ("TotalVisits", "total visits"), ("lead_source", "lead source"), ("Annual_Revenue__c", "annual revenue"),
    ("hs_lead_status", "lead status"), ("numberOfEmployees", "number of employees"), ("Do Not Email", "do not email"),
    ("CRM ID", "CRM ID"),
])
def test_column_names_become_words(column: str, words: str) -> None:
    assert humanise(column) == words


def test_numbers_are_rounded_for_reading() -> None:
    assert [format_number(v) for v in (1532, 1532.4, 12.46, 2.456, 0.3333, 0, 1_234_567)] == [
        "1,532", "1,532", "12.5", "2.5", "0.33", "0", "1.2 million"]


def test_each_kind_reads_like_a_sentence() -> None:
    frame = pd.DataFrame({
        "Lead Source": ["Google", "Reference"] * 10 + ["Bing"],
        "Do Not Email": ["No", "Yes"] * 10 + ["No"],
        "Total Time Spent on Website": range(21),
        "TotalVisits": range(21),
        "Page Views Per Visit": np.linspace(0, 5, 21),
        "What is your current occupation": ["Student", "Working Professional"] * 10 + ["Other"],
        "Created At": pd.date_range("2025-03-03 14:00", periods=21, freq="D").astype(str),
        "created_days": np.arange(21.0),
        "Notes": np.arange(21.0),
    })
    pre = Preprocessor.fit(frame, min_level_count=2)
    book = Phrasing(labels={"Total Time Spent on Website": "Total Time Spent on Website (minutes)",
                            "What is your current occupation": "Occupation", "created_days": "Created Date"},
                    kinds={"created_days": "date", "Notes": "text"})
    names = pre.feature_names
    row = pd.DataFrame({"Lead Source": ["Reference"], "Do Not Email": ["No"], "Total Time Spent on Website": [14],
                        "TotalVisits": [5], "Page Views Per Visit": [2.456], "What is your current occupation": ["Student"],
                        "Created At": ["2025-03-03 14:00"], "created_days": [12.0], "Notes": [40.0]})
    x = pre.transform(row)[0]

    def says(feature: str, value: float | None = None) -> str:
        i = names.index(feature)
        return describe_feature(pre, i, x[i] if value is None else value, "+", book)

    assert says("Lead Source") == "lead source is Reference"
    assert says("Lead Source", 2.0) == "lead source is a rare value"  # "Bing" merged into "other"
    assert says("Do Not Email") == "do not email is no"
    assert says("Total Time Spent on Website") == "14 minutes on the website"
    assert says("TotalVisits") == "5 visits"
    assert says("TotalVisits", 0.0) == "no visits"
    assert says("Page Views Per Visit") == "page views per visit is 2.5"
    assert says("What is your current occupation") == "occupation is Student"
    assert says("Created At (dow)") == "created on a Monday"
    assert says("Created At (month)") == "created in March"
    assert says("Created At (hour)") == "created around 14:00"
    assert says("created_days") == "created 12 days ago"
    assert says("Notes") == "notes filled in" and says("Notes", 0.0) == "no notes"
    assert says("Notes", float("nan")) == "no notes"
    assert says("Lead Source", float("nan")) == "lead source unknown"
    assert says("What is your current occupation", float("nan")) == "occupation unknown"
    # Without a schema the column name is humanised: a question label keeps its question form.
    i = names.index("What is your current occupation")
    assert describe_feature(pre, i, x[i], "-") == "current occupation is Student"
    # A plain {column: label} mapping works wherever reasons are rendered.
    assert describe_feature(pre, names.index("TotalVisits"), 1.0, "+", {"TotalVisits": "Website visits"}) == "1 website visit"


def test_units_and_dates_read_naturally() -> None:
    assert describe_numeric("Time on site (seconds)", 1532) == "26 minutes on the site"
    assert describe_numeric("Annual revenue (USD)", 1_200_000) == "annual revenue is 1.2 million USD"
    assert describe_numeric("Bounce rate (%)", 35) == "bounce rate is 35%"
    assert describe_numeric("Number of employees", 120) == "120 employees"
    assert describe_numeric("Days since last contact", 12) == "12 days since last contact"
    assert describe_age("Close Date", -40) == "close in 40 days"
    assert describe_age("Created", 0.2) == "created today"
    assert describe_age("Last Contacted", 400) == "last contacted 13 months ago"
    # A label that is a question reads as question and answer.
    assert describe_category("How did you hear about X Education", "Word Of Mouth") == (
        "how did you hear about X education: Word Of Mouth")
    assert describe_missing("How did you hear about X Education") == "how did you hear about X education: no answer"


# ---- models: every lead graded and explained ----------------------------------------------------


def x_education_like(n: int = 900, seed: int = 11) -> pd.DataFrame:
    """A small synthetic CRM export shaped like X Education's leads (the real file is not a test input)."""
    rng = np.random.default_rng(seed)
    origin = rng.choice(["API", "Landing Page Submission", "Lead Add Form"], n, p=[0.45, 0.4, 0.15])
    source = rng.choice(["Google", "Direct Traffic", "Olark Chat", "Reference"], n, p=[0.35, 0.3, 0.2, 0.15])
    dne = rng.choice(["No", "Yes"], n, p=[0.88, 0.12])
    visits = rng.poisson(3, n)
    minutes = rng.gamma(2.0, 6.0, n).round(1)
    occupation = rng.choice(["Unemployed", "Working Professional", "Student", "Select"], n, p=[0.5, 0.15, 0.15, 0.2])
    country = rng.choice(["India", "United States", ""], n, p=[0.6, 0.1, 0.3])
    age = rng.integers(0, 60, n).astype(float)
    notes = np.where(rng.random(n) < 0.4, rng.integers(5, 200, n), 0).astype(float)
    logit = (-1.6 + 1.8 * (source == "Reference") + 1.5 * (origin == "Lead Add Form") - 1.0 * (dne == "Yes")
             + 0.08 * minutes + 1.6 * (occupation == "Working Professional") - 1.2 * (occupation == "Student")
             - 0.02 * age + 0.6 * (notes > 0))
    converted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "Prospect ID": [f"p{i}" for i in range(n)], "Lead Origin": origin, "Lead Source": source, "Do Not Email": dne,
        "TotalVisits": visits, "Total Time Spent on Website": minutes, "What is your current occupation": occupation,
        "Country": country, "Days Since Created": age, "Notes": notes, "Converted": converted,
    })


X_PHRASING = Phrasing(
    labels={"Total Time Spent on Website": "Total Time Spent on Website (minutes)",
            "What is your current occupation": "Occupation", "Days Since Created": "Created"},
    kinds={"Days Since Created": "date", "Notes": "text"},
)


@pytest.fixture(scope="module")
def csv_experiment():
    frame = x_education_like()
    options = TrainOptions(label="Converted", id_column="Prospect ID",
                           fit_columns=("What is your current occupation", "Country"), phrasing=X_PHRASING)
    return frame, run_experiment(frame, options, seed=0)


def test_a_csv_model_grades_and_explains_every_lead_in_plain_words(csv_experiment) -> None:
    frame, exp = csv_experiment
    bundle = exp.bundle
    assert bundle.grade_source == "fit" and bundle.phrasing == X_PHRASING
    batch = score_frame(frame, bundle)
    assert_graded_and_explained(bundle, frame, batch)
    text = " | ".join(r for reasons in batch.reasons for r in reasons)
    for phrase in ("lead source is Reference", "occupation is Student", "do not email is ", "minutes on the website",
                   "created ", " days ago", "notes"):
        assert phrase in text, phrase
    assert "Total Time Spent" not in text and " = " not in text and "is missing" not in text
    # The single-lead path agrees with the batch.
    rows = frame.drop(columns=["Converted"]).to_dict("records")
    for i in range(0, len(rows), 97):
        one = score(rows[i], bundle)
        assert one.grade == batch.grades[i] and one.reasons == batch.reasons[i]
    # Grades rank fit: A converts more often than F.
    y = frame["Converted"].to_numpy()
    grades = np.array(batch.grades)
    assert y[grades == "A"].mean() > y[grades == "F"].mean()


def test_the_phrasing_survives_save_and_load(csv_experiment, tmp_path) -> None:
    frame, exp = csv_experiment
    loaded = ModelBundle.load(exp.bundle.save(tmp_path / "m"))
    assert loaded.phrasing == X_PHRASING and loaded.grade_source == "fit"
    assert score_frame(frame.head(50), loaded).reasons == score_frame(frame.head(50), exp.bundle).reasons
    # A caller's labels override the recorded ones.
    relabelled = score_frame(frame, loaded, phrasing={"Lead Source": "Channel"})
    assert any("channel is Reference" in r for reasons in relabelled.reasons for r in reasons)


def test_a_model_from_events_grades_and_explains_every_lead() -> None:
    events, outcomes = behaviour_world(seed=6, leads=300)
    frame = build_training_frame(events, outcomes)
    exp = run_experiment(frame, TrainOptions(label="won", id_column="lead_id", time_column="as_of",
                                             fit_columns=FIT_FEATURES))
    bundle = exp.bundle
    assert bundle.fit is not None and bundle.grade_source == "fit"
    assert "fit head" in report_of(exp)["grades"]
    features = frame.drop(columns=["lead_id", "as_of", "won"])
    batch = score_frame(features, bundle)
    assert_graded_and_explained(bundle, features, batch)
    assert len(set(batch.grades)) >= 3


def test_without_fit_signal_grades_come_from_the_score_percentile(csv_experiment) -> None:
    frame, _ = csv_experiment
    data = frame.assign(Empty="")
    for fit_columns in ((), ("Empty",)):
        exp = run_experiment(data, TrainOptions(label="Converted", id_column="Prospect ID", fit_columns=fit_columns), seed=1)
        bundle = exp.bundle
        assert bundle.fit is None and bundle.grade_source == "score"
        assert bundle.metadata["grade_source"] == "score" and "percentile" in report_of(exp)["grades"]
        batch = score_frame(data, bundle)
        assert_graded_and_explained(bundle, data, batch)
        # Quintiles of the training scores: each grade holds roughly a fifth of the rows, best scores in A.
        shares = pd.Series(batch.grades).value_counts(normalize=True)
        assert set(shares.index) == set(GRADES) and shares.max() < 0.3
        p = pd.Series(batch.probabilities)
        assert p[np.array(batch.grades) == "A"].min() >= p[np.array(batch.grades) == "F"].max()
    assert "Empty" in report_of(exp)["grades"]


def test_a_bundle_saved_without_grade_thresholds_still_grades(csv_experiment, tmp_path) -> None:
    frame, exp = csv_experiment
    old = ModelBundle(main=exp.bundle.main, fit=None,
                      metadata={k: v for k, v in exp.bundle.metadata.items()
                                if k not in ("grade_thresholds", "grade_source", "grades", "phrasing")})
    batch = score_frame(frame.head(200), old)
    assert set(batch.grades) <= set(GRADES) and len(set(batch.grades)) >= 3
    assert score(frame.iloc[0].to_dict(), old).grade in GRADES


# ---- the cold-start rules -----------------------------------------------------------------------


def test_rules_grade_from_fit_points_and_always_give_a_reason() -> None:
    grade = COLD_START_RULES.grade_row
    assert grade({"seniority": "vp"}) == "A"
    assert grade({"seniority": "director", "employees_bucket": "200-999"}) == "A"
    assert grade({"employees_bucket": "5000+"}) == "B"
    assert grade({"demo_requests_30d": 3}) == "C"  # behaviour is not fit: nothing known about who it is
    assert grade({"email_domain_type": "free"}) == "D"
    assert grade({"seniority": "student", "email_domain_type": "free"}) == "F"
    cold = Scorer(None)
    for features in ({}, {"demo_requests_30d": 1, "seniority": "c-level"}, {"seniority": "student"}):
        s = cold.score(features)
        assert s.grade in GRADES and s.reasons
    nothing = cold.score({"industry": "retail"})
    assert nothing.grade == "C" and nothing.reasons == ("= no scoring rule applies: base score 20",)


def test_a_scorecard_without_fit_rules_grades_the_score_and_round_trips() -> None:
    card = PointsModel(rules=(Rule("visits", "gte", 5, 60, "5+ visits"), Rule("noise", "eq", "x", 0, "zero")), base=10)
    assert card.grade_row({"visits": 9}) == "B" and card.grade_row({}) == "F"  # 70 -> B, 10 -> F
    assert card.score_row({"visits": 9, "noise": "x"}) == (70, ("+ 5+ visits",))  # a 0-point rule is no reason
    fit_card = PointsModel(rules=(Rule("size", "eq", "big", 8, "big company", fit=True),), grade_cuts=(8, 4, 0, -4))
    assert fit_card.grade_row({"size": "big"}) == "A" and fit_card.grade_row({}) == "C"
    assert PointsModel.from_json(fit_card.to_json()) == fit_card
    assert PointsModel.from_json(COLD_START_RULES.to_json()) == COLD_START_RULES


def test_the_scorer_grades_and_explains_every_lead_with_a_trained_model(csv_experiment) -> None:
    frame, exp = csv_experiment
    scorer = Scorer(exp.bundle, min_outcomes=100, min_positives=20)
    assert not scorer.using_rules
    for row in frame.drop(columns=["Converted"]).head(30).to_dict("records"):
        s = scorer.score(row, feature_time=None)
        assert s.grade in GRADES and s.reasons
