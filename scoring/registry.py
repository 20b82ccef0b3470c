"""Model registry on disk: one sub-directory per bundle version under a models directory.

    <models_dir>/<version>/model.ubj, fit_model.ubj, metadata.json

`register` writes a bundle and returns a plain metadata dict (version, path, feature hash, metrics,
trained_at, status) shaped for a row in the `models` table, which the caller records; the registry
itself never touches a database. Which version serves is the caller's decision (the champion row);
`latest` is the newest version on disk by trained_at.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from scoring.model import META_FILE, BundleError, ModelBundle

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelRegistry:
    """Stores and finds model bundles in a directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_of(self, version: str) -> Path:
        """Directory of one version (which may not exist)."""
        if not _VERSION.match(version):
            raise BundleError(f"invalid model version {version!r}")
        return self.directory / version

    def register(self, bundle: ModelBundle, *, status: str = "candidate") -> dict[str, Any]:
        """Save a bundle under its version and return the row the caller should record."""
        target = self.path_of(bundle.version)
        if (target / META_FILE).exists():
            raise BundleError(f"model version {bundle.version} is already registered at {target}")
        # Write into a temporary sibling and rename, so a crash never leaves a half bundle under the version.
        tmp = self.directory / f".{bundle.version}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        bundle.save(tmp)
        tmp.rename(target)
        return self.describe(bundle, target, status)

    @staticmethod
    def describe(bundle: ModelBundle, path: Path, status: str = "candidate") -> dict[str, Any]:
        """The registry row for a bundle: what a `models` table needs."""
        meta = bundle.metadata
        return {
            "version": bundle.version,
            "path": str(path),
            "feature_hash": meta.get("feature_hash"),
            "features": list(meta.get("features", [])),
            "metrics": dict(meta.get("metrics", {})),
            "params": dict(meta.get("params", {})),
            "trained_at": meta.get("trained_at"),
            "training_window": (meta.get("training") or {}).get("window"),
            "outcomes": dict(meta.get("outcomes", {})),
            "has_fit_model": bundle.fit is not None,
            "status": status,
        }

    def load(self, version: str) -> ModelBundle:
        """Load one registered version."""
        path = self.path_of(version)
        if not path.is_dir():
            raise BundleError(f"model version {version} not found in {self.directory}")
        return ModelBundle.load(path)

    def versions(self) -> list[str]:
        """Registered versions, oldest first (by trained_at, then name)."""
        if not self.directory.is_dir():
            return []
        found: list[tuple[str, str]] = []
        for child in self.directory.iterdir():
            meta = child / META_FILE
            if child.is_dir() and not child.name.startswith(".") and meta.is_file():
                try:
                    trained_at = str(json.loads(meta.read_text()).get("trained_at", ""))
                except (OSError, json.JSONDecodeError):
                    continue
                found.append((trained_at, child.name))
        return [name for _, name in sorted(found)]

    def latest(self) -> ModelBundle | None:
        """The newest registered bundle, or None when the registry is empty."""
        versions = self.versions()
        return self.load(versions[-1]) if versions else None

    def resolve(self, ref: str | Path | None) -> ModelBundle:
        """Load by a version name, a bundle directory path, or (None) the latest version."""
        if ref is None:
            bundle = self.latest()
            if bundle is None:
                raise BundleError(f"no trained model in {self.directory}; run `leadbridge train` first")
            return bundle
        as_path = Path(ref)
        if (as_path / META_FILE).is_file():
            return ModelBundle.load(as_path)
        if isinstance(ref, str) and _VERSION.match(ref) and (self.directory / ref).is_dir():
            return self.load(ref)
        raise BundleError(f"model {str(ref)!r} is neither a registered version in {self.directory} nor a bundle directory")
