"""Training data: a CSV file or a dataset that scikit-learn ships (no downloads)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpc_train.errors import SpecError
from hpc_train.spec.model import DataSpec

_SKLEARN_LOADERS = {
    "digits": "load_digits",
    "iris": "load_iris",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
}


@dataclass
class Dataset:
    """Features and integer class labels, split into train and validation parts."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def load_dataset(data: DataSpec, seed: int = 0, *, base_dir: Path | None = None) -> Dataset:
    """Load and split the spec's data; standardize with train statistics when asked."""
    from sklearn.model_selection import train_test_split

    x, y_raw = _load_table(data.train_path, data, "data.train_path", base_dir)
    if data.val_path:
        x_val, y_val_raw = _load_table(data.val_path, data, "data.val_path", base_dir)
        classes = sorted(set(y_raw.tolist()) | set(y_val_raw.tolist()), key=str)
        y, y_val = _encode(y_raw, classes), _encode(y_val_raw, classes)
        x_train, y_train = x, y
    else:
        classes = sorted(set(y_raw.tolist()), key=str)
        y = _encode(y_raw, classes)
        counts = np.bincount(y)
        stratify = y if counts.min() >= 2 else None
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=data.val_fraction, random_state=seed, stratify=stratify)
    if x_train.shape[1] != x_val.shape[1]:
        raise SpecError("train and validation data have different numbers of columns", key="data.val_path",
                        value=data.val_path)
    if data.standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train = (x_train - mean) / std
        x_val = (x_val - mean) / std
    return Dataset(x_train.astype(np.float32), y_train.astype(np.int64), x_val.astype(np.float32),
                   y_val.astype(np.int64), [str(c) for c in classes], data.train_path)


def _encode(labels: np.ndarray, classes: list) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in labels.tolist()], dtype=np.int64)


def _load_table(path: str, data: DataSpec, key: str, base_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if path.startswith("sklearn:"):
        import sklearn.datasets

        loader = getattr(sklearn.datasets, _SKLEARN_LOADERS[path.split(":", 1)[1]])
        bunch = loader()
        return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)
    file = Path(path)
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    if not file.is_file():
        raise SpecError("data file not found", key=key, value=path,
                        hint="give a CSV path (relative to the spec file) or sklearn:digits|iris|wine|breast_cancer")
    return _read_csv(file, data, key)


def feature_columns(header: list[str], target: int, data: DataSpec, file: Path) -> list[int]:
    """Indexes of the feature columns: data.features in their order, else every column but the target and
    data.drop. An unknown name, or the target among them, is refused naming it and the header's columns."""
    chosen_key, chosen = ("data.features", data.features) if data.features is not None else ("data.drop", data.drop)
    for name in chosen:
        if name not in header:
            raise SpecError(f"column {name!r} is not in the header of {file}", key=chosen_key, value=name,
                            allowed=header)
        if header.index(name) == target:
            raise SpecError(f"column {name!r} is the target, not a feature", key=chosen_key, value=name,
                            hint=f"remove it from {chosen_key}; data.target names the label column")
    if data.features is not None:
        return [header.index(name) for name in data.features]
    dropped = {header.index(name) for name in data.drop}
    return [i for i in range(len(header)) if i != target and i not in dropped]


def _read_csv(file: Path, data: DataSpec, key: str) -> tuple[np.ndarray, np.ndarray]:
    with file.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 3:
        raise SpecError("CSV needs a header row and at least two data rows", key=key, value=str(file))
    header, body = rows[0], rows[1:]
    if data.target is None:
        column = len(header) - 1
    elif data.target in header:
        column = header.index(data.target)
    else:
        raise SpecError("target column not in the CSV header", key="data.target", value=data.target,
                        allowed=header)
    columns = feature_columns(header, column, data, file)
    features, labels = [], []
    for line_no, row in enumerate(body, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise SpecError(f"CSV line {line_no} has {len(row)} fields, the header has {len(header)}",
                            key=key, value=str(file))
        labels.append(row[column])
        features.append(_numbers(row, columns, header, line_no, key, file))
    y = np.array(labels)
    try:
        y = y.astype(np.int64)
    except ValueError:
        pass
    return np.array(features, dtype=np.float64), y


def _numbers(row: list[str], columns: list[int], header: list[str], line_no: int, key: str,
             file: Path) -> list[float]:
    values = []
    for i in columns:
        try:
            values.append(float(row[i]))
        except ValueError:
            raise SpecError(f"CSV line {line_no}, column {header[i]!r} holds {row[i]!r}, not a number",
                            key=key, value=str(file),
                            hint=f"features must be numbers: leave the column out with data.drop: [{header[i]}], "
                                 "or list the columns to use in data.features; the target column may hold "
                                 "class names") from None
    return values
