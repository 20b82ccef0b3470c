"""Score bands: validation names the problem; quantile cut-offs, tiers and shares match hand-computed values."""

from __future__ import annotations

import pytest

from core.bands import (
    DEFAULT_BANDS,
    LEGACY_CUTOFFS,
    SEED_FIXED_BANDS,
    BandError,
    parse_band_set,
    resolve,
    shares,
    tier_of,
)

# 20 leads (MIN_QUANTILE_LEADS): scores 1..20 x 5 -> 5, 10, ..., 100.
SCORES = [5 * i for i in range(1, 21)]


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "fixed", "bands": [{"name": "hot", "value": 50}, {"name": "warm", "value": 95},
                                 {"name": "cold", "value": 0}]}, "must fall from the top band down"),
    ({"mode": "fixed", "bands": [{"name": "hot", "value": 95}, {"name": "cold", "value": 10}]},
     "its cut-off must be 0"),
    ({"mode": "fixed", "bands": [{"name": "hot", "value": 101}, {"name": "cold", "value": 0}]},
     "between 0 and 100"),
    ({"mode": "fixed", "bands": [{"name": "Hot", "value": 90}, {"name": "hot", "value": 0}]}, "unique"),
    ({"mode": "fixed", "bands": [{"name": "", "value": 90}, {"name": "cold", "value": 0}]}, "name ''"),
    ({"mode": "fixed", "bands": [{"name": "hot", "value": "high"}, {"name": "cold", "value": 0}]},
     "must be a number"),
    ({"mode": "fixed", "bands": [{"name": "hot", "value": 90}]}, "between 2 and 6 bands"),
    ({"mode": "quantile", "bands": [{"name": "hot", "value": 10}, {"name": "cold", "value": 80}]},
     "add up to 100%"),
    ({"mode": "quantile", "bands": [{"name": "hot", "value": 0}, {"name": "cold", "value": 100}]}, "above 0%"),
    ({"mode": "tiers", "bands": []}, "mode must be one of quantile, fixed"),
])
def test_invalid_band_sets_are_refused_naming_the_problem(data: dict, message: str) -> None:
    with pytest.raises(BandError, match=message):
        parse_band_set(data)


def test_custom_names_and_numeric_text_are_accepted() -> None:
    parsed = parse_band_set({"mode": "fixed", "bands": [{"name": "A list", "value": "80"},
                                                        {"name": "nurture", "value": 30}, {"name": "rest", "value": 0}]})
    assert [(b.name, b.value) for b in parsed.bands] == [("A list", 80.0), ("nurture", 30.0), ("rest", 0.0)]
    assert resolve(parsed, SCORES) == (("A list", 80), ("nurture", 30), ("rest", 0))


def test_quantile_cutoffs_by_hand() -> None:
    # Top 10% of 20 leads = 2 leads: the 2nd highest is 95. Top 40% = 8 leads: the 8th highest is 65.
    cutoffs = resolve(DEFAULT_BANDS, SCORES)
    assert cutoffs == (("hot", 95), ("warm", 65), ("cold", 0))
    assert shares(cutoffs, SCORES) == {"hot": 0.10, "warm": 0.30, "cold": 0.60}
    assert [tier_of(s, cutoffs) for s in (100, 95, 94, 65, 64, 0)] == ["hot", "hot", "warm", "warm", "cold", "cold"]


def test_quantile_ties_fall_in_the_higher_band() -> None:
    # 25 leads: 5 at 90, 20 at 10. Top 10% = ceil(2.5) = 3 leads -> the 3rd highest is 90; top 40% = 10 -> 10.
    scores = [90] * 5 + [10] * 20
    cutoffs = resolve(DEFAULT_BANDS, scores)
    assert cutoffs == (("hot", 90), ("warm", 10), ("cold", 0))
    assert shares(cutoffs, scores) == {"hot": 0.2, "warm": 0.8, "cold": 0.0}


def test_few_scores_read_shares_as_percentiles() -> None:
    assert resolve(DEFAULT_BANDS, [50] * 19) == (("hot", 90), ("warm", 60), ("cold", 0))


def test_seed_fixed_bands_and_the_empty_top_band_they_leave() -> None:
    calibrated = [2, 3, 5, 8, 12, 20, 35, 41, 55, 70] * 2  # a B2B-like spread of probabilities x 100
    fixed = resolve(SEED_FIXED_BANDS, calibrated)
    assert fixed == (("hot", 95), ("warm", 50), ("cold", 0))
    assert shares(fixed, calibrated)["hot"] == 0.0
    assert shares(resolve(DEFAULT_BANDS, calibrated), calibrated)["hot"] == 0.10  # 55, 70 x 2 -> top 2: both 70


def test_tier_without_bands_keeps_the_legacy_cutoffs() -> None:
    assert LEGACY_CUTOFFS == (("hot", 75), ("warm", 40), ("cold", 0))
    assert [tier_of(s) for s in (75, 74, 40, 39, None)] == ["hot", "warm", "warm", "cold", None]
