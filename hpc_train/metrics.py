"""Classification metrics with one meaning everywhere: macro-averaged f1, precision and recall."""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_DIRECTIONS = {"accuracy": "max", "f1_score": "max", "precision": "max", "recall": "max", "loss": "min"}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None = None,
                           n_classes: int | None = None) -> dict[str, Any]:
    """accuracy, f1_score, precision, recall (macro), and log loss when probabilities are given."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1_score": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    if proba is not None:
        labels = list(range(n_classes if n_classes is not None else proba.shape[1]))
        result["loss"] = float(log_loss(y_true, proba, labels=labels))
    return result
