"""scikit-learn estimators by name; hyperparameters are checked against the estimator's own."""

from __future__ import annotations

import re
from typing import Any

from hpc_train.errors import SpecError

# name -> (module, class, defaults that make runs reproducible and use the allocation)
_ESTIMATORS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "random_forest": ("sklearn.ensemble", "RandomForestClassifier", {"n_jobs": -1}),
    "svm": ("sklearn.svm", "SVC", {"probability": True}),
    "gradient_boosting": ("sklearn.ensemble", "GradientBoostingClassifier", {}),
    "logistic_regression": ("sklearn.linear_model", "LogisticRegression", {"max_iter": 1000}),
}
# scikit-learn's parameter validation names the parameter: "The 'n_estimators' parameter of ... Got 'ten' instead."
_PARAMETER_NAMED = re.compile(r"The '(\w+)' parameter")
_GOT = re.compile(r"\s*Got .* instead\.?\s*$", re.DOTALL)


def build_sklearn(name: str, hyperparameters: dict[str, Any], seed: int) -> Any:
    """A configured estimator; an unknown hyperparameter is a SpecError listing the valid ones."""
    import importlib

    module_name, class_name, defaults = _ESTIMATORS[name]
    estimator_cls = getattr(importlib.import_module(module_name), class_name)
    valid = estimator_cls().get_params()
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise SpecError(f"unknown hyperparameter for {name}", key=f"model.hyperparameters.{unknown[0]}",
                        value=hyperparameters[unknown[0]], allowed=sorted(valid))
    params = {**defaults, **hyperparameters}
    if "random_state" in valid and "random_state" not in hyperparameters:
        params["random_state"] = seed
    try:
        estimator = estimator_cls(**params)
        estimator._validate_params()
    except (TypeError, ValueError) as exc:
        named = _PARAMETER_NAMED.search(str(exc))
        if named and named.group(1) in hyperparameters:
            reason = _GOT.sub("", str(exc))  # the value is shown once, as "got ..."
            raise SpecError(f"bad hyperparameter for {name}: {reason}", key=f"model.hyperparameters.{named.group(1)}",
                            value=hyperparameters[named.group(1)]) from None
        raise SpecError(f"bad hyperparameters for {name}: {exc}", key="model.hyperparameters",
                        value=hyperparameters) from None
    return estimator


def check_sklearn_hyperparameters(name: str, hyperparameters: dict[str, Any], seed: int = 0) -> None:
    """Refuse unknown names (listing the estimator's own) and values the estimator rejects: a SpecError."""
    build_sklearn(name, hyperparameters, seed)
