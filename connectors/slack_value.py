"""The weekly Slack summary of a pilot (issue 17): the verdict sentence and each KPI per group, with intervals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.slack import escape_mrkdwn
from scoring.value import KpiText


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_value_message(pilot_name: str, sentence: str, lines: Sequence[KpiText], leads: dict[str, int],
                        admin_url: str | None = None) -> dict[str, Any]:
    """Block Kit payload for the weekly pilot summary."""
    name = escape_mrkdwn(pilot_name)
    table = "\n".join(f"• *{escape_mrkdwn(k.label)}*: pilot {escape_mrkdwn(k.pilot)}, control "
                      f"{escape_mrkdwn(k.control)} ({escape_mrkdwn(k.difference)})" for k in lines)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(f"Lead scoring pilot: {pilot_name}", 150),
                                    "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(escape_mrkdwn(sentence), 3000)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(table or "No KPI has data yet.", 3000)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(
            f"{name}: {leads.get('pilot', 0):,} pilot and {leads.get('control', 0):,} control leads. Differences "
            "are pilot minus control with 95% intervals.", 3000)}]},
    ]
    if admin_url:
        blocks[1]["accessory"] = {"type": "button", "action_id": "open_value",
                                  "text": {"type": "plain_text", "text": "Open Value"}, "url": admin_url[:3000]}
    return {"text": _clip(f"Lead scoring pilot {pilot_name}: {sentence}", 3000), "blocks": blocks}
