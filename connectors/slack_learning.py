"""Slack messages from the learning loop (drift alerts, model changes), posted with SlackNotifier.post."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.slack import escape_mrkdwn


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_drift_message(model_version: str, drifted: Sequence[tuple[str, float]], threshold: float, live_rows: int,
                        action: str | None = None, admin_url: str | None = None) -> dict[str, Any]:
    """Block Kit payload for a drift alert: which features (and the score) moved, by how much, what happens next."""
    names = ", ".join(name for name, _ in drifted[:5]) or "nothing"
    text = f"leadbridge drift alert: PSI above {threshold} for {names} (model {model_version})"
    lines = "\n".join(f"• `{escape_mrkdwn(name)}` PSI {value:.3f}" for name, value in list(drifted)[:10])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Lead-score drift detected", "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(
            f"The live window ({live_rows:,} leads) moved away from what model *{escape_mrkdwn(model_version)}* "
            f"was trained on (PSI > {threshold}):\n{lines}", 3000)}},
    ]
    if action:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(escape_mrkdwn(action), 3000)}]})
    if admin_url:
        blocks[1]["accessory"] = {"type": "button", "action_id": "open_models",
                                  "text": {"type": "plain_text", "text": "Open models"}, "url": admin_url[:3000]}
    return {"text": _clip(text, 3000), "blocks": blocks}
