"""Risk: which customers are about to leave, why, and what to do next.
Owns the churn features, the model, its reasons, the next best action, the customer card and the activation log.
Reads the store and metrics.
"""

# Re-exported here: everything that imports neither scikit-learn nor pandera, so that importing any
# risk module stays cheap. Import these by module instead: ``cxdash.risk.training`` (train,
# train_event_model, train_labelled_model), ``cxdash.risk.evaluation`` (model_metrics) and
# ``cxdash.risk.estimator`` (the candidates) load scikit-learn (about 1 s); ``cxdash.risk.card`` (the
# customer card) loads the ingest validation and with it pandera (about 0.4 s).
from cxdash.risk.activation import (
    STATUSES,
    activation_stats,
    at_risk,
    customer_score,
    export_csv,
    follow_up,
    list_version,
    mark,
)
from cxdash.risk.aggregates import INTENT_SIGNALS, VALUE_BASES, Customers, Sample, data_as_of, value_basis
from cxdash.risk.attributes import MISSING_CATEGORY, LabelError, attribute_columns, identifier_like, parse_label
from cxdash.risk.drivers import Driver, driver_info, main_feature, reason_baseline
from cxdash.risk.features import AGE_CAP_DAYS, FeatureFrame, SnapshotReader, customer_features, labelled_features
from cxdash.risk.model import (
    MIN_CHURNED,
    ChurnModel,
    ModelNotTrainedError,
    ModelVersionError,
    NotEnoughChurnError,
    fitted_with,
)
from cxdash.risk.next_action import DEFAULT_ACTION, RECENT_SIGNAL_DAYS, age_words, next_action
from cxdash.risk.persistence import latest_model, load_model, model_versions, save_model, version_problem
from cxdash.risk.reasons import explain
from cxdash.risk.recent import recent_signals, row_signals
from cxdash.risk.scoring import current_features, rescore_customers, score_frame, store_scores

__all__ = [
    "AGE_CAP_DAYS",
    "DEFAULT_ACTION",
    "INTENT_SIGNALS",
    "MIN_CHURNED",
    "MISSING_CATEGORY",
    "RECENT_SIGNAL_DAYS",
    "STATUSES",
    "VALUE_BASES",
    "ChurnModel",
    "Customers",
    "Driver",
    "FeatureFrame",
    "LabelError",
    "ModelNotTrainedError",
    "ModelVersionError",
    "NotEnoughChurnError",
    "Sample",
    "SnapshotReader",
    "activation_stats",
    "age_words",
    "at_risk",
    "attribute_columns",
    "current_features",
    "customer_features",
    "customer_score",
    "data_as_of",
    "driver_info",
    "explain",
    "export_csv",
    "fitted_with",
    "follow_up",
    "identifier_like",
    "labelled_features",
    "latest_model",
    "list_version",
    "load_model",
    "main_feature",
    "mark",
    "model_versions",
    "next_action",
    "parse_label",
    "reason_baseline",
    "recent_signals",
    "rescore_customers",
    "row_signals",
    "save_model",
    "score_frame",
    "store_scores",
    "value_basis",
    "version_problem",
]
