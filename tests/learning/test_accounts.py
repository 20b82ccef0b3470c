"""Account scores from contacts: probability that someone converts, engagement, fit grade, reasons."""

from __future__ import annotations

import pytest

from scoring.accounts import ContactScore, median_grade, score_account


def test_account_probability_is_noisy_or_of_top_contacts_scaled_by_engagement() -> None:
    contacts = [ContactScore(1, 0.5, 50, "B", True, ("+ requested a demo", "- free e-mail domain")),
                ContactScore(2, 0.4, 40, "C", True), ContactScore(3, 0.1, 10, "A", False)]
    result = score_account(contacts)
    assert result.probability == pytest.approx(1 - 0.5 * 0.6 * 0.9)  # two engaged: full value
    assert result.value == 73 and result.engaged_contacts == 2 and result.contacts == 3
    assert result.grade == "B"  # median of A, B, C
    assert result.reasons[0] == "+ 2 contacts active in the last 7 days"
    assert "+ top contact: requested a demo" in result.reasons
    quiet = score_account([ContactScore(c.lead_id, c.probability, c.score, c.grade, False) for c in contacts])
    assert quiet.probability == pytest.approx((1 - 0.5 * 0.6 * 0.9) * 0.6)
    assert quiet.reasons[0] == "- nobody active in the last 7 days"


def test_only_the_top_five_contacts_count() -> None:
    many = [ContactScore(i, 0.1, 10, None, True) for i in range(20)]
    assert score_account(many).probability == pytest.approx(1 - 0.9 ** 5)
    assert score_account(many).grade is None


def test_edges() -> None:
    assert score_account([]).value == 0
    assert median_grade(["A", "F"]) == "A" and median_grade([None, "D"]) == "D" and median_grade([]) is None
