"""Deterministic assignment: stable across processes and hash seeds, close to the configured share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.experiment import CONTROL, PILOT, assign_cluster, assign_group

REPO = Path(__file__).resolve().parents[2]


def test_share_is_within_one_point_over_10000_leads() -> None:
    for share in (0.10, 0.25, 0.5):
        control = sum(assign_group(i, "pilot-2025", share) == CONTROL for i in range(1, 10_001))
        assert abs(control / 10_000 - share) < 0.01, (share, control)


def test_the_same_in_another_process_with_another_hash_seed() -> None:
    ids = list(range(1, 201)) + ["lead-7", "003Qy00000AbCdE"]
    here = [assign_group(i, "s", 0.3) for i in ids] + [assign_cluster(f"pod-{i}", "s", 0.3) for i in range(50)]
    probe = ("from scoring.experiment import assign_group, assign_cluster\n"
             f"ids = {ids!r}\n"
             "print(','.join([assign_group(i, 's', 0.3) for i in ids]"
             " + [assign_cluster(f'pod-{i}', 's', 0.3) for i in range(50)]))")
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False,
                             timeout=60, env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().split(",") == here


def test_pinned_assignments_never_change() -> None:
    """A changed hash scheme would silently move live leads between groups: these were computed once and pinned."""
    got = "".join("c" if assign_group(i, "leadbridge", 0.5) == CONTROL else "p" for i in range(1, 33))
    assert got == PINNED


PINNED = "cpcpccppppcccpppppcppcppccppccpp"


def test_int_and_str_ids_are_the_same_lead() -> None:
    assert all(assign_group(i, "x", 0.5) == assign_group(str(i), "x", 0.5) for i in range(500))


def test_the_salt_reshuffles() -> None:
    a = [assign_group(i, "first", 0.5) for i in range(4000)]
    b = [assign_group(i, "second", 0.5) for i in range(4000)]
    agree = sum(x == y for x, y in zip(a, b)) / 4000
    assert 0.46 < agree < 0.54  # independent coin flips agree half the time


def test_clusters_and_leads_use_separate_namespaces() -> None:
    leads = [assign_group(i, "x", 0.5) for i in range(4000)]
    clusters = [assign_cluster(str(i), "x", 0.5) for i in range(4000)]
    assert 0.46 < sum(x == y for x, y in zip(leads, clusters)) / 4000 < 0.54


def test_a_larger_share_only_moves_pilot_leads_into_control() -> None:
    small = [assign_group(i, "x", 0.10) for i in range(3000)]
    large = [assign_group(i, "x", 0.20) for i in range(3000)]
    assert all(b == CONTROL for a, b in zip(small, large) if a == CONTROL)
    assert {assign_group(i, "x", 0.0) for i in range(300)} == {PILOT}
    assert {assign_group(i, "x", 1.0) for i in range(300)} == {CONTROL}


def test_cluster_share_over_many_owners() -> None:
    control = sum(assign_cluster(f"owner-{i}", "pods", 0.10) == CONTROL for i in range(10_000))
    assert abs(control / 10_000 - 0.10) < 0.01


@pytest.mark.parametrize("share", [-0.1, 1.1])
def test_share_out_of_range_raises(share: float) -> None:
    with pytest.raises(ValueError):
        assign_group(1, "x", share)


def test_empty_salt_and_bool_ids_raise() -> None:
    with pytest.raises(ValueError):
        assign_group(1, "", 0.1)
    with pytest.raises(TypeError):
        assign_group(True, "x", 0.1)
