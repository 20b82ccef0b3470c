"""Reading a child process's console in tests: its lines as they come, and what must not be among them."""

from __future__ import annotations

import json
import threading
from typing import IO, Any


class Lines(threading.Thread):
    """Collects a pipe's lines as they come (so a chatty child never blocks on a full pipe)."""

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines: list[str] = []

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.strip()]


def per_task_lines(lines: list[str]) -> list[str]:
    """Celery's "Task x[id] received" / "Task x[id] succeeded in" lines."""
    return [line for line in lines if "Task " in line and (" received" in line or "succeeded in" in line)]
