"""The pilot's lifecycle (issue 17) through the service, `leadbridge value pilot` and /api/pilot: each change
audited and announced to the workers, each invalid one refused with a clear message (no traceback, 4xx JSON)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cli.value_commands import value
from core.keys import PILOT_KEY
from core.runtime import ServiceUrls
from core.runtime import redis_client as make_redis_client
from services import Conflict, OperationError
from services.pilots import PilotInput, end_pilot, pause_pilot, resume_pilot, start_pilot
from storage.db import Database
from storage.models import AlertRule, AuditEntry, Pilot
from tests.admin.test_fields_api import caller


def audit(db: Database) -> list[tuple[str, str, Any, Any]]:
    """(action, actor, before, after status) of every pilot entry, oldest first."""
    with db.session() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("pilot."))
                               .order_by(AuditEntry.id))
        return [(r.action, r.actor, (r.before or {}).get("status"), (r.after or {}).get("status")) for r in rows]


def test_lifecycle_is_audited_and_invalid_transitions_are_refused(clean_db: Database) -> None:
    db = clean_db
    with db.session() as session:
        session.add(AlertRule(name="hot", threshold=82, channel="#sales", cooldown_minutes=60, routing={},
                              enabled=True))
    with pytest.raises(Conflict, match="cannot pause: no pilot has been started"):
        with db.session() as session:
            pause_pilot(session, "ann")
    with db.session() as session:
        pilot = start_pilot(session, "ann", PilotInput(name="EMEA pod"))
        assert (pilot.status, pilot.control_share, pilot.unit, pilot.threshold) == ("running", 0.10, "lead", 82)
        assert pilot.horizon == 2000 and pilot.effect == 0.05 and len(pilot.salt) == 32
    for action, message in ((lambda s: start_pilot(s, "bo", PilotInput(name="second")),
                             "pilot 'EMEA pod' is running; end it before starting another"),
                            (lambda s: resume_pilot(s, "bo"), "cannot resume: pilot 'EMEA pod' is running")):
        with pytest.raises(Conflict, match=message) as refused, db.session() as session:
            action(session)
        assert refused.value.status == 409
    with db.session() as session:
        pause_pilot(session, "ann")
    with pytest.raises(Conflict, match="cannot pause: pilot 'EMEA pod' is paused"), db.session() as session:
        pause_pilot(session, "ann")
    with pytest.raises(Conflict, match="end it before starting another"), db.session() as session:
        start_pilot(session, "bo", PilotInput(name="second"))  # a paused pilot is still open
    with db.session() as session:
        resume_pilot(session, "ann")
        end_pilot(session, "cy")
    with pytest.raises(Conflict, match="cannot resume: pilot 'EMEA pod' has ended"), db.session() as session:
        resume_pilot(session, "ann")
    with pytest.raises(Conflict, match="cannot end: pilot 'EMEA pod' has ended"), db.session() as session:
        end_pilot(session, "ann")
    assert audit(db) == [("pilot.start", "ann", None, "running"), ("pilot.pause", "ann", "running", "paused"),
                         ("pilot.resume", "ann", "paused", "running"), ("pilot.end", "cy", "running", "ended")]
    with db.session() as session:  # an ended pilot makes room for the next
        assert start_pilot(session, "bo", PilotInput(name="second", unit="owner")).status == "running"
        assert session.scalar(select(Pilot.ended_at).where(Pilot.name == "EMEA pod")) is not None


@pytest.mark.parametrize(("data", "message"), [
    (PilotInput(name="p", control_share=0.0), "control_share must be above 0 and at most 0.5"),
    (PilotInput(name="p", control_share=0.6), "control_share must be above 0 and at most 0.5"),
    (PilotInput(name="p", control_share=float("nan")), "control_share"),
    (PilotInput(name="p", unit="pod"), "unit must be one of lead, owner"),
    (PilotInput(name="p", threshold=101), "threshold is a score from 0 to 100"),
    (PilotInput(name="p", horizon=0), "horizon is a number of closed leads"),
    (PilotInput(name="p", effect=0.0), "effect is a rise in the win rate"),
    (PilotInput(name=" "), "name is required"),
])
def test_bad_settings_are_refused_and_nothing_is_stored(clean_db: Database, data: PilotInput, message: str) -> None:
    with pytest.raises(OperationError, match=message) as refused, clean_db.session() as session:
        start_pilot(session, "ann", data)
    assert refused.value.status == 400
    with clean_db.session() as session:
        assert session.scalars(select(Pilot)).first() is None
    assert audit(clean_db) == []


def test_cli_starts_pauses_resumes_ends_and_refuses_with_a_message(clean_db: Database, service_urls: ServiceUrls,
                                                                   tmp_path: Path, redis_url: str) -> None:
    runner = CliRunner()
    env = {**service_urls.as_env(), "LEADBRIDGE_ENV_FILE": "", "LEADBRIDGE_DATA_DIR": str(tmp_path)}
    redis = make_redis_client(redis_url)
    redis.delete(PILOT_KEY)

    def run(*args: str) -> Any:
        return runner.invoke(value, ["pilot", *args], env=env)

    status = run("status")
    assert status.exit_code == 0 and "no pilot yet" in status.output
    started = run("start", "--name", "EMEA pod", "--control-share", "0.2", "--unit", "owner", "--threshold", "70",
                  "--horizon", "1500", "--effect", "0.04")
    assert started.exit_code == 0, started.output
    assert "started pilot 'EMEA pod'" in started.output and "20% of owners held back as control" in started.output
    assert redis.get(PILOT_KEY) == b"1"  # the workers were told
    for args, message in ((("start", "--name", "again"), "pilot 'EMEA pod' is running; end it before starting another"),
                          (("resume",), "cannot resume: pilot 'EMEA pod' is running"),
                          (("start", "--name", "x", "--control-share", "0.7"), "control_share must be above 0")):
        refused = run(*args)
        assert refused.exit_code == 1, refused.output
        assert f"error: {message}" in refused.output and "Traceback" not in refused.output
    assert run("pause").exit_code == 0 and run("resume").exit_code == 0
    ended = run("end")
    assert ended.exit_code == 0 and "ended pilot 'EMEA pod'" in ended.output
    assert run("resume").exit_code == 1
    shown = json.loads(run("status", "--json").output)["pilot"]
    assert {k: shown[k] for k in ("name", "status", "unit", "control_share", "threshold", "horizon", "effect")} == {
        "name": "EMEA pod", "status": "ended", "unit": "owner", "control_share": 0.2, "threshold": 70,
        "horizon": 1500, "effect": 0.04}
    assert shown["groups"] == {"pilot": 0, "control": 0}
    assert redis.get(PILOT_KEY) == b"4"
    assert [a[0] for a in audit(clean_db)] == ["pilot.start", "pilot.pause", "pilot.resume", "pilot.end"]
    assert {a[1] for a in audit(clean_db)} == {f"cli:{__import__('getpass').getuser()}"}


def test_api_lifecycle_with_4xx_json_for_bad_input(admin_app: Any, make_token: Callable[[str], str],
                                                   clean_db: Database) -> None:
    admin, viewer = caller(admin_app, make_token("admin")), caller(admin_app, make_token("viewer"))
    assert admin("GET", "/pilot").get_json() == {"pilot": None, "warnings": []}
    for body, where in (({"name": "p", "control_share": 0.6}, "body.control_share"),
                        ({"name": "p", "control_share": 0}, "body.control_share"),
                        ({"name": "p", "unit": "pod"}, "body.unit"),
                        ({"name": "p", "threshold": 101}, "body.threshold"),
                        ({"control_share": 0.1}, "body.name"),
                        ({"name": "p", "salt": "mine"}, "body.salt")):
        response = admin("POST", "/pilot", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["error"] == "invalid_request" and where in response.get_json()["message"]
    assert viewer("POST", "/pilot", json={"name": "p"}).status_code == 403
    assert caller(admin_app, None)("POST", "/pilot/end").status_code == 401
    refused = admin("POST", "/pilot/pause")
    assert refused.status_code == 409
    assert refused.get_json() == {"error": "no_pilot", "message": "cannot pause: no pilot has been started"}

    started = admin("POST", "/pilot", json={"name": "EMEA pod", "control_share": 0.25})
    assert started.status_code == 200, started.get_json()
    pilot = started.get_json()["pilot"]
    assert (pilot["status"], pilot["control_share"], pilot["unit"], pilot["threshold"]) == ("running", 0.25, "lead", 75)
    assert "salt" not in pilot and pilot["groups"] == {"pilot": 0, "control": 0}
    again = admin("POST", "/pilot", json={"name": "second"})
    assert again.status_code == 409 and again.get_json()["error"] == "pilot_open"
    assert admin("POST", "/pilot/resume").get_json()["error"] == "pilot_running"
    assert admin("POST", "/pilot/pause").get_json()["pilot"]["status"] == "paused"
    assert admin("POST", "/pilot/resume").get_json()["pilot"]["status"] == "running"
    assert admin("POST", "/pilot/end").get_json()["pilot"]["status"] == "ended"
    ended = admin("POST", "/pilot/resume")
    assert ended.status_code == 409 and ended.get_json()["message"] == "cannot resume: pilot 'EMEA pod' has ended"
    assert viewer("GET", "/pilot").get_json()["pilot"]["status"] == "ended"
    assert [a[0] for a in audit(clean_db)] == ["pilot.start", "pilot.pause", "pilot.resume", "pilot.end"]
