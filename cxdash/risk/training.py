"""Training a churn model: the training set, the time split, the choice, the calibration, the report.

Every model is fitted on one part of the data, chosen among the candidates and calibrated on a
second part, and its reported figures come from a third, held-out part that neither choice nor
calibration saw:

* **Event data** (``train_event_model``): feature snapshots at several cutoffs one horizon apart
  (``cxdash.risk.features.customer_features``). The latest ``valid_snapshots`` are held out for the
  report; the ``select_snapshots`` before them choose the candidate and fit the calibration; the
  ``train_snapshots`` before those fit the candidates. Each part's labels are known before the next
  part's first cutoff (time-based, no leakage). Above ``MAX_TRAIN_ROWS`` (``MAX_VALID_ROWS``) rows the
  snapshots are a customer sample drawn in the database, reported in ``metrics["sample_note"]``;
  every customer is still scored.
* **A labelled customer table** (``train_labelled_model``, a snapshot-only label): a stratified
  ``HOLDOUT_SHARE`` of the labelled customers is held out for the report; stratified 5-fold
  cross-validation on the rest chooses the candidate and gives the out-of-fold scores the
  calibration is fitted on; the chosen candidate is then fitted on the rest (never on the held-out
  customers). Rows with an empty label are left out of training.

Fewer than ``MIN_CHURNED`` churned customers in the held-out validation (or in the part that
chooses and calibrates) raise ``NotEnoughChurnError`` before any model is fitted or saved. The
candidate with the best selection ROC AUC is kept (every candidate's selection score is reported,
so the plain baselines are on the page beside the choice). ``train`` is the one call for the CLI and
the page: train, save as the newest version, score today's customers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sqlalchemy.engine import Connection

from cxdash.metrics import churn as churn_defs
from cxdash.metrics.churn import Definition
from cxdash.risk.aggregates import Sample, data_as_of
from cxdash.risk.attributes import MISSING_CATEGORY
from cxdash.risk.drivers import reason_baseline
from cxdash.risk.estimator import BLEND_OF, CANDIDATES, BlendClassifier, PlattCalibration, candidate_pipeline
from cxdash.risk.evaluation import driver_importance, model_metrics
from cxdash.risk.features import FeatureFrame, SnapshotReader, labelled_features
from cxdash.risk.model import MIN_CHURNED, ChurnModel, ModelNotTrainedError, NotEnoughChurnError, few_threads
from cxdash.risk.persistence import save_model
from cxdash.risk.scoring import current_features, reader_definition, store_scores
from cxdash.store.database import Store
from cxdash.store.version import data_version

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "HOLDOUT_SHARE",
    "MAX_TRAIN_ROWS",
    "MAX_VALID_ROWS",
    "train",
    "train_event_model",
    "train_labelled_model",
]

log = logging.getLogger(__name__)

DEFAULT_HORIZON_DAYS = 30
# Above these many rows, the training (validation) snapshots are a customer sample: a boosted
# model learns no more from millions of rows than from 200,000, and features, fits and the
# validation scoring all cost in proportion to the rows. Every customer is still scored.
MAX_TRAIN_ROWS = 200_000
MAX_VALID_ROWS = 200_000
# The share of a snapshot-only label's customers held out for the report (stratified).
HOLDOUT_SHARE = 0.3
Progress = Callable[[float, str], None]


def _too_little_churn(y: np.ndarray, *, part: str, where: str, fix: str) -> None:
    """Raise ``NotEnoughChurnError`` when ``y`` holds fewer than ``MIN_CHURNED`` churned rows."""
    found = int(np.asarray(y).sum())
    if found >= MIN_CHURNED:
        return
    raise NotEnoughChurnError(
        f"Only {found} churned customer{'s' if found != 1 else ''} in the {part} ({len(y):,} {where}); at least "
        f"{MIN_CHURNED} are needed for the model's figures to mean anything, so no model was trained or saved. "
        f"Try {fix}.",
        part=part,
        found=found,
        customers=len(y),
    )


def _fixes(*, horizon_days: float | None) -> str:
    parts = ["another churn definition (the command 'python -m cxdash churn' lists them; choose one on Data health)"]
    if horizon_days is not None:
        parts.append(f"a longer horizon than {horizon_days:g} days")
    parts.append("more history (older extracts)" if horizon_days is not None else "more labelled customers")
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _usable(ff: FeatureFrame, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Features that vary in the training rows (a constant tells the model nothing)."""
    numeric = [c for c in ff.numeric if rows[c].nunique(dropna=True) > 1]
    categorical = [c for c in ff.categorical if rows[c].astype(str).nunique() > 1]
    return numeric, categorical


def _reference(rows: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    ref = {c: float(rows[c].median()) if rows[c].notna().any() else 0.0 for c in numeric}
    for c in categorical:
        mode = rows[c].dropna().astype(str).mode()
        ref[c] = mode.iloc[0] if len(mode) else MISSING_CATEGORY
    return ref


def _select(scores: dict[str, float]) -> str:
    return max(scores, key=lambda k: (scores[k], -CANDIDATES.index(k)))


def _report(progress: Progress | None, share: float, text: str) -> None:
    log.info(text)
    if progress:
        progress(share, text)


def _snapshot_samples(
    reader: SnapshotReader,
    valid_cutoffs: list[datetime],
    train_cutoffs: list[datetime],
    max_train_rows: int,
    max_valid_rows: int,
) -> dict:
    """One ``Sample`` (or None: every customer) per snapshot, validation cutoffs first, so that
    the training and the validation snapshots each hold at most about their row cap. Consecutive
    snapshots take different customers (offsets 0, 1, 2...), so the sample spans more of the base."""

    def plan(cutoffs: list[datetime], cap: int) -> tuple[int, int]:
        full = sum(reader.live_count(c) for c in cutoffs)
        return full, max(1, -(-full // max(cap, 1)))

    train_full, train_every = plan(train_cutoffs, max_train_rows)
    valid_full, valid_every = plan(valid_cutoffs, max_valid_rows)
    samples = [None if valid_every == 1 else Sample(valid_every, k % valid_every) for k in range(len(valid_cutoffs))]
    samples += [None if train_every == 1 else Sample(train_every, k % train_every) for k in range(len(train_cutoffs))]
    note = None
    if train_every > 1 or valid_every > 1:
        parts = []
        if train_every > 1:
            parts.append(
                f"trained on 1 in {train_every} customers of each training snapshot "
                f"(of {train_full:,} customer-snapshots)"
            )
        if valid_every > 1:
            parts.append(f"validated on 1 in {valid_every} of each validation snapshot (of {valid_full:,})")
        note = "; ".join(parts) + ": a different systematic customer sample per snapshot. Every customer is scored."
    return {"samples": samples, "train_every": train_every, "valid_every": valid_every, "note": note}


# ----------------------------------------------------------------------------- training
@few_threads
def train_labelled_model(
    conn: Connection,
    *,
    label_column: str = "churn_label",
    source: str | None = None,
    folds: int = 5,
    holdout_share: float = HOLDOUT_SHARE,
    candidates: tuple[str, ...] = CANDIDATES,
    progress: Progress | None = None,
) -> ChurnModel:
    """A customer table with its own (snapshot-only) label.

    A stratified ``holdout_share`` of the labelled customers is held out (seed 0). On the rest,
    stratified ``folds``-fold CV scores every candidate; the best is fitted on the rest and
    calibrated on its out-of-fold scores. The report (``metrics``) is measured on the held-out
    customers only (their cx_ids: ``model.held_out_ids``). Raises ``NotEnoughChurnError`` before
    fitting when the held-out part would hold fewer than ``MIN_CHURNED`` churned customers.
    """
    _report(progress, 0.02, "Reading the customer table")
    ff = labelled_features(conn, label_column=label_column, source=source)
    rows = ff.frame[ff.frame["label"].notna()]
    y_all = rows["label"].to_numpy(dtype=int)
    fix = _fixes(horizon_days=None)
    # the held-out part cannot hold more churned customers than the whole label (and a stratified
    # split needs a few of each class): say so before splitting
    _too_little_churn(y_all, part="label", where=f"labelled customers, {label_column}", fix=fix)
    dev_idx, valid_idx = train_test_split(
        np.arange(len(y_all)), test_size=holdout_share, stratify=y_all, random_state=0
    )
    dev_idx, valid_idx = np.sort(dev_idx), np.sort(valid_idx)
    y_valid = y_all[valid_idx]
    _too_little_churn(y_valid, part="held-out validation", where="held-out customers", fix=fix)
    dev, valid = rows.iloc[dev_idx], rows.iloc[valid_idx]
    y = y_all[dev_idx]
    numeric, categorical = _usable(ff, dev)
    x, x_valid = dev[numeric + categorical], valid[numeric + categorical]
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    splits = list(cv.split(x, y))
    oof = {name: np.zeros(len(y)) for name in candidates}
    for i, name in enumerate(candidates):
        _report(progress, 0.05 + 0.7 * i / len(candidates), f"Cross-validating {name.replace('_', ' ')}")
        for train_idx, test_idx in splits:
            est = candidate_pipeline(name, numeric, categorical).fit(x.iloc[train_idx], y[train_idx])
            oof[name][test_idx] = est.predict_proba(x.iloc[test_idx])[:, 1]
    fold_auc = {name: float(np.mean([roc_auc_score(y[t], oof[name][t]) for _, t in splits])) for name in candidates}
    chosen = _select(fold_auc)
    _report(progress, 0.8, f"Fitting {chosen.replace('_', ' ')} on {len(y):,} labelled customers (held-out ones apart)")
    estimator = candidate_pipeline(chosen, numeric, categorical).fit(x, y)
    calibration = PlattCalibration().fit(oof[chosen], y)
    model = ChurnModel(
        estimator,
        calibration,
        numeric,
        categorical,
        _reference(x, numeric, categorical),
        kind="labelled",
        name=chosen,
        label_column=label_column,
        source=source,
        cutoff=ff.cutoff,
        held_out_ids=[str(i) for i in valid.index],
    )
    model.reason_baseline = reason_baseline(x, y, numeric, categorical)
    _report(progress, 0.88, f"Measuring on {len(y_valid):,} held-out customers")
    metrics = model_metrics(y_valid, model.predict_proba(valid))
    _report(progress, 0.92, "Permutation importance on held-out rows")
    metrics.update(
        validation="stratified_holdout",
        evaluated_on=(
            f"{len(y_valid):,} customers held out at random (stratified by the label, {holdout_share:.0%}, "
            "seed 0), used neither to choose the model nor to calibrate it"
        ),
        holdout_share=holdout_share,
        valid_customers=len(y_valid),
        selection=f"stratified_{folds}fold",
        candidates=fold_auc,
        chosen=chosen,
        n_train=len(y),
        n_select=len(y),
        n_positive_select=int(y.sum()),
        n_unlabelled=int(ff.frame["label"].isna().sum()),
        label_column=label_column,
        importance=driver_importance(model, x_valid, y_valid),
        importance_on="held-out customers",
        dropped=ff.dropped,
    )
    model.metrics = metrics
    _report(progress, 1.0, "Done")
    return model


@few_threads
def train_event_model(
    conn: Connection,
    *,
    cutoff: datetime | None = None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    train_snapshots: int = 6,
    select_snapshots: int = 2,
    valid_snapshots: int = 2,
    max_train_rows: int = MAX_TRAIN_ROWS,
    max_valid_rows: int = MAX_VALID_ROWS,
    source: str | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
    progress: Progress | None = None,
    reader: SnapshotReader | None = None,
    churn: Definition | None = None,
) -> ChurnModel:
    """Time-based validation on event data; labels from subscription ends, or from ``churn`` (a dated
    ``cxdash.metrics.churn`` definition: churn records, a dated label, inactivity) when given.

    Snapshots one horizon apart, newest first: ``valid_snapshots`` held out for the report, ending at
    ``cutoff`` (which defaults to the data's latest timestamp minus the horizon, so its labels are
    complete); ``select_snapshots`` before them, on which the candidate is chosen and the calibration
    fitted; ``train_snapshots`` before those, on which the candidates are fitted. Each part's labels
    end by the next part's first cutoff. Several snapshots give enough leavers to learn from and span
    seasonal causes (a spring campaign).

    When the training (selection and held-out) snapshots together would hold more than
    ``max_train_rows`` (``max_valid_rows``) customers, each snapshot is a 1-in-k customer sample, a
    different one per snapshot, drawn in the database; ``metrics["sample_note"]`` says so and
    ``metrics["valid_samples"]`` gives each held-out snapshot's ``[every, offset]`` (None: everyone).

    Raises ``NotEnoughChurnError`` before fitting when the held-out, the selection or the training
    snapshots hold fewer than ``MIN_CHURNED`` churned customers.
    """
    now = data_as_of(conn)
    if now is None:
        raise ModelNotTrainedError("no data loaded: nothing to train on")
    h = timedelta(days=horizon_days)
    cutoff = cutoff or (now - h)
    if cutoff + h > now + timedelta(days=1):
        raise ValueError(
            f"cutoff {cutoff:%Y-%m-%d} + {horizon_days:g} days is after the data's end ({now:%Y-%m-%d}): "
            "the labels would be incomplete; choose an earlier cutoff or a shorter horizon"
        )
    valid_cutoffs = [cutoff - k * h for k in range(valid_snapshots)]
    select_cutoffs = [cutoff - (valid_snapshots + k) * h for k in range(select_snapshots)]
    train_cutoffs = [cutoff - (valid_snapshots + select_snapshots + k) * h for k in range(train_snapshots)]
    _report(progress, 0.01, "Reading the customer table")
    reader = reader or SnapshotReader(conn, source=source, churn=churn)
    # the held-out and the selection snapshots share the validation row cap
    sampling = _snapshot_samples(reader, valid_cutoffs + select_cutoffs, train_cutoffs, max_train_rows, max_valid_rows)
    frames = []
    all_cutoffs = valid_cutoffs + select_cutoffs + train_cutoffs
    for i, c in enumerate(all_cutoffs):
        _report(progress, 0.02 + 0.45 * i / len(all_cutoffs), f"Features as of {c:%Y-%m-%d}")
        frames.append(reader.features(c, horizon_days=horizon_days, sample=sampling["samples"][i]))
    template = frames[0]
    n_vs = valid_snapshots + select_snapshots
    valid = pd.concat([f.frame for f in frames[:valid_snapshots]])
    select = pd.concat([f.frame for f in frames[valid_snapshots:n_vs]])
    train = pd.concat([f.frame for f in frames[n_vs:]])
    del frames
    fix = _fixes(horizon_days=horizon_days)

    def when(cutoffs: list[datetime]) -> str:
        return ", ".join(f"{c:%Y-%m-%d}" for c in sorted(cutoffs))

    y_valid = valid["label"].to_numpy(dtype=int)
    y_select = select["label"].to_numpy(dtype=int)
    y_train = train["label"].to_numpy(dtype=int)
    for y, part, cutoffs in (
        (y_valid, "held-out validation", valid_cutoffs),
        (y_select, "selection and calibration snapshots", select_cutoffs),
        (y_train, "training snapshots", train_cutoffs),
    ):
        _too_little_churn(
            y, part=part, fix=fix, where=f"customer-snapshots as of {when(cutoffs)}, churn within {horizon_days:g} days"
        )
    numeric, categorical = _usable(template, train)
    x_train, x_select = train[numeric + categorical], select[numeric + categorical]
    fitted, select_scores, aucs = {}, {}, {}
    for i, name in enumerate(candidates):
        _report(progress, 0.5 + 0.35 * i / len(candidates), f"Training {name.replace('_', ' ')}")
        parts = BLEND_OF if name == "blend" else ()
        if parts and all(p in fitted for p in parts):  # the blend averages two fitted candidates
            est = BlendClassifier.of_fitted([fitted[p] for p in parts])
        else:
            est = candidate_pipeline(name, numeric, categorical).fit(x_train, y_train)
        fitted[name] = est
        select_scores[name] = est.predict_proba(x_select)[:, 1]
        aucs[name] = float(roc_auc_score(y_select, select_scores[name]))
    chosen = _select(aucs)
    calibration = PlattCalibration().fit(select_scores[chosen], y_select)
    model = ChurnModel(
        fitted[chosen],
        calibration,
        numeric,
        categorical,
        _reference(x_train, numeric, categorical),
        kind="events",
        name=chosen,
        source=source,
        cutoff=cutoff,
        horizon_days=horizon_days,
    )
    model.reason_baseline = reason_baseline(x_train, y_train, numeric, categorical)
    _report(progress, 0.88, f"Measuring on the held-out snapshots ({when(valid_cutoffs)})")
    metrics = model_metrics(y_valid, model.predict_proba(valid), groups=valid.index.to_numpy())
    # Importance is description, not a figure of merit nor an input to the choice: measured on every
    # snapshot the candidates were not fitted on (selection and held-out), it rests on twice the leavers.
    _report(progress, 0.9, "Permutation importance on the selection and held-out snapshots")
    unseen = pd.concat([valid, select])
    metrics.update(
        validation="time_based",
        evaluated_on=(
            f"{len(y_valid):,} customer-snapshots as of {when(valid_cutoffs)} "
            f"({valid.index.nunique():,} customers), held out: later than every snapshot the model was "
            "fitted, chosen or calibrated on"
        ),
        train_cutoffs=[c.isoformat() for c in train_cutoffs],
        select_cutoffs=[c.isoformat() for c in select_cutoffs],
        valid_cutoffs=[c.isoformat() for c in valid_cutoffs],
        valid_samples=[
            None if smp is None else [smp.every, smp.offset] for smp in sampling["samples"][:valid_snapshots]
        ],
        valid_customers=int(valid.index.nunique()),
        horizon_days=horizon_days,
        selection="time_based",
        candidates=aucs,
        chosen=chosen,
        n_train=len(y_train),
        n_select=len(y_select),
        n_positive_select=int(y_select.sum()),
        n_positive_train=int(y_train.sum()),
        sample_note=sampling["note"],
        train_sample_every=sampling["train_every"],
        valid_sample_every=sampling["valid_every"],
        train_base_rate=float(y_train.mean()),
        importance=driver_importance(model, unseen[numeric + categorical], unseen["label"].to_numpy(dtype=int)),
        importance_on="selection and held-out snapshots",
        dropped=template.dropped,
    )
    model.metrics = metrics
    _report(progress, 1.0, "Done")
    return model


def train(
    store: Store,
    *,
    label_column: str | None = None,
    source: str | None = None,
    cutoff: datetime | None = None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    progress: Progress | None = None,
) -> ChurnModel:
    """Train, save as the newest version, and score today's customers into the ``scores`` table.

    With ``label_column`` the customer table's own label is used (stratified CV); otherwise the
    label is churn within ``horizon_days`` from subscription end dates (time-based validation),
    falling back to the CRM's ``churn_label`` when no subscriptions are loaded.
    """

    def sub(lo: float, hi: float) -> Progress | None:
        return (lambda share, text: progress(lo + (hi - lo) * share, text)) if progress else None

    today = None
    chosen = churn_defs.chosen_name(store)
    with store.connect() as conn:
        version = data_version(conn)
        definition = None
        if label_column is None:
            res = churn_defs.resolve(conn, chosen)
            definition = res.definition
            if definition is None:
                raise ModelNotTrainedError(
                    "no churn definition fits the loaded data, so there is nothing to learn: load a customer table "
                    "with a churn label, subscriptions, churn records, or dated purchases or activity"
                )
            if definition.basis == "label" and not res.dated:
                label_column, source = "churn_label", source or definition.source
        if label_column is not None:
            model = train_labelled_model(conn, label_column=label_column, source=source, progress=sub(0.0, 0.8))
        else:
            dated = reader_definition(definition.name)
            # read the customer table once for both
            reader = SnapshotReader(conn, source=source, churn=dated)
            model = train_event_model(
                conn,
                cutoff=cutoff,
                horizon_days=horizon_days,
                source=source,
                progress=sub(0.0, 0.8),
                reader=reader,
                churn=dated,
            )
            model.churn_definition = definition.name  # current_features below reads it
            _report(progress, 0.82, "Features of today's customers")
            today = current_features(conn, model, reader=reader)
            del reader
        if definition is not None:
            model.churn_definition = definition.name
            model.metrics["churn_definition"] = definition.name
            model.metrics["churn_definition_text"] = definition.describe()
    save_model(store, model, data_version=version)
    _report(progress, 0.85, "Scoring today's customers")
    store_scores(store, model, features=today)
    _report(progress, 1.0, f"Model version {model.version} saved and customers scored")
    return model
