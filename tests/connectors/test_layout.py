"""Every CRM provider package holds the same modules, so each CRM's knowledge is found in the same places."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import connectors
from connectors.registry import PROVIDERS

MODULES = {"__init__", "client", "webhook", "fields", "outcomes", "history", "echo", "activity", "actions"}
ROOT = Path(connectors.__file__).parent


def module_names(package: str) -> set[str]:
    """The Python modules directly inside one connectors/<package>/ folder."""
    return {path.stem for path in (ROOT / package).glob("*.py")}


def test_provider_packages_have_the_same_module_names() -> None:
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "parsing")
    assert packages == sorted(PROVIDERS)
    for package in packages:
        assert module_names(package) == MODULES, package


@pytest.mark.parametrize("crm", sorted(PROVIDERS))
def test_each_provider_package_says_what_it_is(crm: str) -> None:
    assert (importlib.import_module(f"connectors.{crm}").__doc__ or "").strip()
