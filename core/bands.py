"""Score bands as plain data: the names a CRM's tier field shows and the cut-offs that put a lead in one.

A band set is either
- `quantile` (the default): each band holds a share of the leads scored in the last 7 days, top band first
  (hot = the top 10%, warm = the next 30%, cold = the rest). Why quantiles: the score is a calibrated
  probability x 100, and at B2B base rates (2-5% of leads convert) almost no lead scores 95, so fixed cut-offs
  leave the top band empty; a share keeps the hot list the size a sales team can work (10% of leads at a 3%
  base rate still holds most of the wins the model can rank high). Its cut-offs in score points are
  recomputed from the score history (tasks/bands.py) and cached, never computed per lead;
- `fixed`: each band's lowest score (the seed's 95 / 50: hot >= 95, warm >= 50, cold below).
`resolve` turns either into `Cutoffs` (band name, lowest score), which `tier_of` reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("quantile", "fixed")
MAX_BANDS = 6
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _\-+]{0,39}$")  # fits the 40-character Salesforce tier field
# Fewer leads than this in the window and a share is not worth computing: quantile bands read their shares as
# score percentiles instead (the top 10% -> 90 and above) until the history fills.
MIN_QUANTILE_LEADS = 20
WINDOW_DAYS = 7

Cutoffs = tuple[tuple[str, int], ...]  # (band name, lowest score), top band first; the last one's is 0
# What the tier field showed before bands were configurable; used only when no band set was ever resolved.
LEGACY_CUTOFFS: Cutoffs = (("hot", 75), ("warm", 40), ("cold", 0))


class BandError(ValueError):
    """A band set that cannot be used, with a message naming the problem."""


@dataclass(frozen=True)
class Band:
    """One band: its name and value (quantile: its share of leads in %; fixed: its lowest score)."""

    name: str
    value: float

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True)
class BandSet:
    """Named bands, top first, and how their values are read."""

    mode: str
    bands: tuple[Band, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (stored in band_sets, sent by the API)."""
        return {"mode": self.mode, "bands": [b.to_json() for b in self.bands]}


DEFAULT_BANDS = BandSet("quantile", (Band("hot", 10), Band("warm", 30), Band("cold", 60)))
SEED_FIXED_BANDS = BandSet("fixed", (Band("hot", 95), Band("warm", 50), Band("cold", 0)))
PRESETS = {"quantile": DEFAULT_BANDS, "fixed-95-50": SEED_FIXED_BANDS}


def parse_band_set(data: Any) -> BandSet:
    """A validated BandSet from JSON-like input ({"mode": ..., "bands": [{"name", "value"}]}); BandError if not."""
    if not isinstance(data, Mapping):
        raise BandError("a band set is an object with 'mode' and 'bands'")
    mode = data.get("mode")
    if mode not in MODES:
        raise BandError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    raw = data.get("bands")
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise BandError("bands must be a list of {name, value}, top band first")
    bands = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, Mapping):
            raise BandError(f"band {i} must be an object with a name and a value")
        name = str(item.get("name") or "").strip()
        value = item.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(str(value).strip())
            except ValueError:
                raise BandError(f"band {i} ({name or 'unnamed'}): value must be a number (got {value!r})") from None
        bands.append(Band(name, float(value)))
    return validate(BandSet(str(mode), tuple(bands)))


def validate(band_set: BandSet) -> BandSet:
    """The band set itself when usable; BandError naming the first problem otherwise."""
    bands = band_set.bands
    if band_set.mode not in MODES:
        raise BandError(f"mode must be one of {', '.join(MODES)} (got {band_set.mode!r})")
    if not 2 <= len(bands) <= MAX_BANDS:
        raise BandError(f"give between 2 and {MAX_BANDS} bands (got {len(bands)})")
    seen: set[str] = set()
    for i, band in enumerate(bands, 1):
        if not NAME_PATTERN.match(band.name):
            raise BandError(f"band {i}: name {band.name!r} must be 1-40 letters, digits, spaces, '-', '_' or '+'")
        if band.name.lower() in seen:
            raise BandError(f"band names must be unique: {band.name!r} appears twice")
        seen.add(band.name.lower())
        if not math.isfinite(band.value) or not 0 <= band.value <= 100:
            raise BandError(f"band {band.name!r}: value must be between 0 and 100 (got {band.value:g})")
    values = [b.value for b in bands]
    if band_set.mode == "fixed":
        for upper, lower in zip(bands, bands[1:]):
            if lower.value >= upper.value:
                raise BandError(f"cut-offs must fall from the top band down: {lower.name!r} ({lower.value:g}) is not "
                                f"below {upper.name!r} ({upper.value:g})")
        if any(v != int(v) for v in values):
            raise BandError("fixed cut-offs are whole score points (0-100)")
        if values[-1] != 0:
            raise BandError(f"the last band ({bands[-1].name!r}) takes every score left: its cut-off must be 0")
    else:
        if any(v <= 0 for v in values):
            raise BandError("every band's share must be above 0%")
        if abs(sum(values) - 100) > 1e-6:
            raise BandError(f"the shares must add up to 100% (they add up to {sum(values):g}%)")
    return band_set


def quantile_cutoff(scores_desc: Sequence[int], share: float) -> int:
    """The lowest score among the top `share` % of `scores_desc` (sorted high to low): the k-th, k = ceil(share*n)."""
    k = max(1, math.ceil(share / 100 * len(scores_desc) - 1e-9))
    return int(scores_desc[min(k, len(scores_desc)) - 1])


def resolve(band_set: BandSet, scores: Sequence[int]) -> Cutoffs:
    """Each band's lowest score: fixed as given; quantile from `scores` (the window's leads), top band first.

    A quantile band's cut-off is the score of the lead at its cumulative share (ties all fall in the higher band,
    so a band can hold more than its share, or nothing). Under MIN_QUANTILE_LEADS scores, the shares are read as
    percentiles (100 - cumulative share).
    """
    bands = band_set.bands
    if band_set.mode == "fixed":
        return tuple((b.name, int(b.value)) for b in bands)
    ordered = sorted((int(s) for s in scores), reverse=True)
    out: list[tuple[str, int]] = []
    cumulative = 0.0
    for band in bands[:-1]:
        cumulative += band.value
        if len(ordered) >= MIN_QUANTILE_LEADS:
            cut = quantile_cutoff(ordered, cumulative)
        else:
            cut = int(round(100 - cumulative))
        if out:
            cut = min(cut, out[-1][1])  # never above the band over it
        out.append((band.name, max(cut, 0)))
    out.append((bands[-1].name, 0))
    return tuple(out)


def tier_of(score: int | None, cutoffs: Cutoffs = LEGACY_CUTOFFS) -> str | None:
    """The name of the first band (top down) whose lowest score `score` reaches; None without a score."""
    if score is None:
        return None
    for name, lowest in cutoffs:
        if score >= lowest:
            return name
    return cutoffs[-1][0]


def shares(cutoffs: Cutoffs, scores: Sequence[int]) -> dict[str, float]:
    """Each band's share (0-1) of `scores` under `cutoffs`, in band order (all 0 without scores)."""
    counts = {name: 0 for name, _ in cutoffs}
    for score in scores:
        counts[str(tier_of(int(score), cutoffs))] += 1
    total = len(scores)
    return {name: (count / total if total else 0.0) for name, count in counts.items()}


def cutoffs_from_json(data: Any) -> Cutoffs | None:
    """Cut-offs from their cached JSON form ([[name, lowest], ...]), None when malformed."""
    try:
        out = tuple((str(name), int(lowest)) for name, lowest in data)
    except (TypeError, ValueError):
        return None
    return out or None
