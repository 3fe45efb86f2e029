"""Train a scikit-learn model from a spec in one process and write its run directory."""

from __future__ import annotations

import time
from typing import Any

from hpc_train.data import Dataset
from hpc_train.metrics import classification_metrics
from hpc_train.models.sklearn_models import build_sklearn
from hpc_train.rundir import RunDirectory
from hpc_train.spec.model import JobSpec


def train_sklearn(spec: JobSpec, data: Dataset, run_dir: RunDirectory) -> dict[str, Any]:
    """Fit, evaluate on the validation split, save the model; returns the results dict."""
    import joblib

    estimator = build_sklearn(spec.model.type, spec.model.hyperparameters, spec.training.seed)
    started = time.time()
    run_dir.write_progress(epoch=0, epochs=1, step=0, total_steps=1, started=started, steps_per_s=None)
    estimator.fit(data.x_train, data.y_train)
    fit_seconds = time.time() - started
    predicted = estimator.predict(data.x_val)
    proba = estimator.predict_proba(data.x_val) if hasattr(estimator, "predict_proba") else None
    metrics = classification_metrics(data.y_val, predicted, proba, data.n_classes)
    train_metrics = classification_metrics(data.y_train, estimator.predict(data.x_train))
    run_dir.append_metrics({"epoch": 1, "step": 1, "accuracy": train_metrics["accuracy"],
                            "val_accuracy": metrics["accuracy"], "val_loss": metrics.get("loss"),
                            "samples_per_s": len(data.y_train) / max(fit_seconds, 1e-9)})
    run_dir.write_progress(epoch=1, epochs=1, step=1, total_steps=1, started=started,
                           steps_per_s=1 / max(fit_seconds, 1e-9))
    model_path = run_dir.path / "model.joblib"
    joblib.dump(estimator, model_path)
    return {**metrics, "train_accuracy": train_metrics["accuracy"], "fit_seconds": fit_seconds,
            "model_path": str(model_path)}
