"""CLI test fixtures."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from cli.supervisor import STOP_SIGNALS


@pytest.fixture()
def keep_signal_handlers() -> Iterator[None]:
    """Give SIGINT/SIGTERM back to pytest after the test."""
    # The supervisor takes them for itself (and ignores them while stopping).
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
