"""Training rows from events and labels: each lead's declared features as of its own decision time.

The values come from `scoring.features.build_offline`, the same code the online store is checked
against, so a model trained here sees exactly what the live pipeline will hand it. `build_offline`
reads every event it is given; to keep one row cheap, each call gets only the events that can
influence that lead: its own, and those of every lead that ever shared an account key with it (the
`account_engaged_contacts_7d` feature counts colleagues). Nobody else can change its vector, so the
result is identical to passing all events.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.records import Event
from scoring.features import (
    ACTIVITY_TYPES,
    FEATURE_NAMES,
    FIT_FEATURES,
    build_offline,
    default_lead_of,
    traits_of,
)
from scoring.labels import LabelledLead
from scoring.schema import FeatureSchema, max_levels, model_kinds

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMN = "won"
ID_COLUMN = "lead_id"
# The holdout is the newest leads by decision time. (Not by when the label arrived: negatives arrive a
# maturity window late, so the newest *labels* would be almost all negatives.)
DECISION_COLUMN = "as_of"
LABELLED_COLUMN = "labelled_at"
META_COLUMNS = (ID_COLUMN, DECISION_COLUMN, LABELLED_COLUMN, LABEL_COLUMN)


class EventIndex:
    """Events grouped by lead, and leads grouped by the account keys they ever carried."""

    def __init__(self, events: Iterable[Event], lead_of: Callable[[Event], str] = default_lead_of, *,
                 schema: FeatureSchema | None = None) -> None:
        self.schema = schema or FeatureSchema.empty()
        self.by_lead: dict[str, list[Event]] = {}
        accounts_of: dict[str, set[str]] = {}
        for event in events:
            lead = lead_of(event)
            self.by_lead.setdefault(lead, []).append(event)
            account = traits_of(event).get("account")
            if account:
                accounts_of.setdefault(lead, set()).add(account)
        self.members: dict[str, set[str]] = {}
        for lead, keys in accounts_of.items():
            for key in keys:
                self.members.setdefault(key, set()).add(lead)
        self.accounts_of = accounts_of
        self.lead_of = lead_of
        self.activity: dict[str, list[datetime]] = {
            lead: sorted(e.occurred_at for e in evs if e.event_type in ACTIVITY_TYPES) for lead, evs in self.by_lead.items()
        }

    def last_activity(self, lead: str, at: datetime) -> datetime | None:
        """The lead's latest activity at or before `at`."""
        times = self.activity.get(lead, [])
        i = bisect.bisect_right(times, at)
        return times[i - 1] if i else None

    def related_events(self, lead: str) -> list[Event]:
        """The events that can influence `lead`'s feature vector."""
        leads = {lead}
        for key in self.accounts_of.get(lead, ()):
            leads |= self.members.get(key, set())
        out: list[Event] = []
        for other in leads:
            out.extend(self.by_lead.get(other, ()))
        return out

    def features_at(self, lead: str, as_of: Any, feature_refs: Sequence[str] | None = None) -> dict[str, Any]:
        """`build_offline` for one lead as of one instant, on the events that matter to it."""
        return build_offline(self.related_events(lead), as_of, lead_ids=[lead], feature_refs=feature_refs,
                             lead_of=self.lead_of, schema=self.schema)[lead]


def build_decision_frame(
    events: Iterable[Event] | EventIndex,
    labels: Sequence[LabelledLead],
    *,
    lead_of: Callable[[Event], str] = default_lead_of,
    progress: Callable[[int], None] | None = None,
    schema: FeatureSchema | None = None,
) -> pd.DataFrame:
    """One row per label: lead_id, as_of (decision time), labelled_at, won, and every feature of the schema.

    The schema is the index's when `events` is an EventIndex, else `schema` (default: built-ins only).
    """
    import pandas as pd

    index = events if isinstance(events, EventIndex) else EventIndex(events, lead_of, schema=schema)
    rows: list[dict[str, Any]] = []
    for i, label in enumerate(labels):
        vector = index.features_at(label.lead_id, label.decision_time)
        rows.append({ID_COLUMN: label.lead_id, DECISION_COLUMN: label.decision_time.isoformat(),
                     LABELLED_COLUMN: label.labelled_at.isoformat(), LABEL_COLUMN: int(label.won), **vector})
        if progress is not None and (i + 1) % 100 == 0:
            progress(100)
    if progress is not None and len(labels) % 100:
        progress(len(labels) % 100)
    return pd.DataFrame(rows, columns=[*META_COLUMNS, *index.schema.feature_names])


def population_rows(index: EventIndex, now: datetime, days: float = 30.0, limit: int = 5000) -> list[dict[str, Any]]:
    """The scored population around `now`: each lead active in the last `days`, as of its last activity.

    This is how the live window is sampled for drift checks (leads active in the last week, with the
    vector they were scored with after their last activity), so a model's drift reference is built
    the same way from the weeks before it was trained: PSI then compares like with like.
    """
    since = now - timedelta(days=days)
    found: list[tuple[datetime, str]] = []
    for lead in index.by_lead:
        last = index.last_activity(lead, now)
        if last is not None and last > since:
            found.append((last, lead))
    found.sort(reverse=True)
    return [index.features_at(lead, last) for last, lead in found[:limit]]


def train_options(schema: FeatureSchema | None = None, **overrides: Any) -> Any:
    """The TrainOptions for a decision frame: label `won`, newest decisions held out, fit head on fit features.

    With a `schema`, its mapped features train with their kinds (and top_n), its fit fields join the fit head,
    and the model records the schema it was trained under.
    """
    from scoring.training import TrainOptions

    values: dict[str, Any] = {"label": LABEL_COLUMN, "id_column": ID_COLUMN, "time_column": DECISION_COLUMN,
                              "drop": [LABELLED_COLUMN], "fit_columns": list(FIT_FEATURES)}
    if schema is not None and schema.fields:
        values.update(kinds=model_kinds(schema), max_levels=max_levels(schema), schema=schema,
                      fit_columns=[*FIT_FEATURES, *dict.fromkeys(f.feature for f in schema.fields if f.fit)])
    values.update(overrides)
    return TrainOptions(**values)


def serves_live_pipeline(input_columns: Iterable[str], schema: FeatureSchema | None = None) -> bool:
    """True when a model reads only features the online store holds (declared ones, and the mapped
    features of `schema`), so the live pipeline can feed it (kind "lead")."""
    columns = list(input_columns)
    known = set(FEATURE_NAMES) | set(schema.mapped_features if schema is not None else ())
    return bool(columns) and set(columns) <= known


@dataclass
class CsvMapping:
    """A CSV frame with its mapped columns turned into features, and what did or did not map."""

    frame: pd.DataFrame
    mapped: dict[str, str]  # CSV column -> feature
    unmapped: list[str]  # feature-candidate columns that match no mapped field
    dropped: list[str]  # unmapped columns left out (live models read mapped and declared features only)


def _header_key(name: str) -> str:
    return "".join(str(name).split()).lower()


def map_csv_columns(frame: pd.DataFrame, schema: FeatureSchema, *, skip: Iterable[str] = (),
                    time_column: str | None = None, now: datetime, live: bool = False) -> CsvMapping:
    """Match CSV columns to the schema's mapped fields (by internal name, label or feature name; case and spaces
    ignored) and derive their values as the live pipeline does (scoring.schema.derive).

    A date's age is taken at the row's `time_column` value when given (and readable), else at `now`. With
    `live`, columns that are neither mapped nor declared features are left out, so the model can serve.
    Raises ValueError when two columns map to one feature.
    """
    import pandas as pd

    from scoring.features import FEATURE_NAMES, to_ms
    from scoring.schema import derive

    names: dict[str, Any] = {}
    for f in schema.fields:
        for name in (f.property, f.label, f.feature):
            if name:
                names.setdefault(_header_key(name), f)
    skipped = {c for c in skip if c}
    mapped: dict[str, str] = {}
    unmapped: list[str] = []
    for column in frame.columns:
        if column in skipped:
            continue
        found = names.get(_header_key(column))
        if found is None:
            if column not in FEATURE_NAMES:
                unmapped.append(column)
            continue
        twin = next((c for c, feature in mapped.items() if feature == found.feature), None)
        if twin is not None:
            raise ValueError(f"columns {twin!r} and {column!r} both map to feature {found.feature!r}")
        mapped[column] = found.feature
    out = frame.copy()
    default_ms = to_ms(now)
    as_of = [default_ms] * len(out)
    if time_column is not None and time_column in out.columns and any(
            schema.field_of_feature(feature).kind == "date" for feature in mapped.values()):  # type: ignore[union-attr]
        times = pd.to_datetime(out[time_column], errors="coerce", format="mixed", utc=True)
        as_of = [default_ms if pd.isna(t) else to_ms(t.to_pydatetime()) for t in times]
    for column, feature in mapped.items():
        kind = schema.field_of_feature(feature).kind  # type: ignore[union-attr]
        values = [derive(kind, raw, ms) for raw, ms in zip(out[column].tolist(), as_of)]
        out = out.drop(columns=[column])
        out[feature] = pd.Series(values, index=out.index, dtype=object)
    dropped = list(unmapped) if live else []
    if dropped:
        out = out.drop(columns=dropped)
    return CsvMapping(out, mapped, unmapped, dropped)
