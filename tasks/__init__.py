"""Celery tasks: the pipeline stages and the periodic jobs. Tasks orchestrate; logic lives elsewhere."""
