"""SQLAlchemy models, sessions and Alembic migrations shared by bridge/ and tasks/."""
