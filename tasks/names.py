"""Names of the tasks other rooms enqueue by name (bridge, services, cli send them without importing the task)."""

INGEST_TASK = "tasks.ingest.process_events"
SCORE_TASK = "tasks.score.score_leads"
WRITEBACK_TASK = "tasks.writeback.flush"
RETRAIN_TASK = "tasks.learning.retrain"
REFRESH_BANDS_TASK = "tasks.bands.refresh_bands"
ACTION_TASK = "tasks.actions.run_action"
