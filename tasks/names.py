"""Names of the tasks other rooms enqueue by name (bridge, services, cli send them without importing the task)."""

INGEST_TASK = "tasks.ingest.process_events"
SCORE_TASK = "tasks.score.score_leads"
WRITEBACK_TASK = "tasks.writeback.flush"
ACTION_TASK = "tasks.actions.run_action"
