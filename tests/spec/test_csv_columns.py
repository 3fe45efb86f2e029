"""A user's own CSV with columns that are not features (a sample id, a date): refused naming the column,
accepted with data.drop or data.features, and then the same training as the numeric-only file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from hpc_train.cli.main import main
from hpc_train.data import load_dataset
from hpc_train.errors import SpecError
from hpc_train.spec import parse_spec

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
METRICS = ("accuracy", "f1_score", "precision", "recall", "loss")


def write_csvs(folder: Path) -> tuple[Path, Path]:
    """iris with class names as the target: numeric-only, and with a sample id, a date and a note around it."""
    iris = load_iris()
    names = [str(iris.target_names[t]) for t in iris.target]
    numeric = folder / "numeric.csv"
    mixed = folder / "mixed.csv"
    numeric.write_text(",".join([*FEATURES, "species"]) + "\n" + "".join(
        ",".join([*(f"{v:g}" for v in row), name]) + "\n" for row, name in zip(iris.data, names, strict=True)))
    mixed.write_text(",".join(["sample_id", *FEATURES[:2], "collected", *FEATURES[2:], "species", "note"]) + "\n"
                     + "".join(",".join([f"S{i:03d}", *(f"{v:g}" for v in row[:2]), f"2026-01-{i % 28 + 1:02d}",
                                         *(f"{v:g}" for v in row[2:]), name, "checked twice" if i % 7 else ""])
                               + "\n" for i, (row, name) in enumerate(zip(iris.data, names, strict=True))))
    return numeric, mixed


def spec_text(train_path: Path, data_extra: str = "") -> str:
    return ("name: iris\nmodel: {type: random_forest, hyperparameters: {n_estimators: 20}}\n"
            f"data: {{train_path: {train_path.name}, target: species{data_extra}}}\ntraining: {{seed: 3}}\n")


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str,
        text: str) -> tuple[int, str, dict[str, float]]:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    code = main(["run", str(spec), "--run-dir", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    results_path = tmp_path / name / "results.json"
    results = json.loads(results_path.read_text()) if code == 0 else {}
    return code, err, {key: results[key] for key in METRICS if key in results}


def test_a_non_numeric_column_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _, mixed = write_csvs(tmp_path)
    code, err, _ = run(tmp_path, monkeypatch, capsys, "plain", spec_text(mixed))
    assert code == 2
    assert "data.train_path" in err and "CSV line 2, column 'sample_id' holds 'S000', not a number" in err
    assert "data.drop: [sample_id]" in err
    # dropping the id alone: the date is next, named as well
    code, err, _ = run(tmp_path, monkeypatch, capsys, "no_id", spec_text(mixed, ", drop: [sample_id]"))
    assert code == 2 and "column 'collected' holds '2026-01-01', not a number" in err


def test_dropped_or_chosen_columns_train_as_the_numeric_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    numeric, mixed = write_csvs(tmp_path)
    code, err, expected = run(tmp_path, monkeypatch, capsys, "numeric", spec_text(numeric))
    assert code == 0, err
    assert set(expected) >= {"accuracy", "f1_score"} and expected["accuracy"] > 0.8
    code, err, dropped = run(tmp_path, monkeypatch, capsys, "dropped",
                             spec_text(mixed, ", drop: [sample_id, collected, note]"))
    assert code == 0, err
    code, err, chosen = run(tmp_path, monkeypatch, capsys, "chosen", spec_text(mixed, f", features: {FEATURES}"))
    assert code == 0, err
    assert dropped == expected and chosen == expected


def test_selected_columns_load_as_the_numeric_file(tmp_path: Path) -> None:
    numeric, mixed = write_csvs(tmp_path)
    plain = load_dataset(parse_spec(spec_text(numeric)).data, 3, base_dir=tmp_path)
    dropped = load_dataset(parse_spec(spec_text(mixed, ", drop: [sample_id, collected, note]")).data, 3,
                           base_dir=tmp_path)
    assert plain.classes == dropped.classes == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(plain.x_train, dropped.x_train)
    np.testing.assert_array_equal(plain.y_val, dropped.y_val)
    # data.features also orders the columns
    reordered = load_dataset(parse_spec(spec_text(mixed, f", features: {FEATURES[::-1]}, standardize: false")).data,
                             3, base_dir=tmp_path)
    raw = load_dataset(parse_spec(spec_text(numeric, ", standardize: false")).data, 3, base_dir=tmp_path)
    np.testing.assert_array_equal(reordered.x_train, raw.x_train[:, ::-1])


@pytest.mark.parametrize("extra,key,fragments", [
    (", drop: [sampleid]", "data.drop", ["column 'sampleid' is not in the header",
                                         "allowed: sample_id, sepal_length, sepal_width, collected"]),
    (", features: [sepal_length, petal_size]", "data.features", ["column 'petal_size' is not in the header",
                                                                "petal_width, species, note"]),
    (", drop: [species]", "data.drop", ["column 'species' is the target", "data.target"]),
])
def test_unknown_or_target_columns_are_refused(tmp_path: Path, extra: str, key: str, fragments: list[str]) -> None:
    _, mixed = write_csvs(tmp_path)
    with pytest.raises(SpecError) as error:
        load_dataset(parse_spec(spec_text(mixed, extra)).data, 0, base_dir=tmp_path)
    assert error.value.key == key
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


def test_cli_names_the_unknown_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, mixed = write_csvs(tmp_path)
    code, err, _ = run(tmp_path, monkeypatch, capsys, "typo", spec_text(mixed, ", drop: [date]"))
    assert code == 2
    assert "data.drop" in err and "'date'" in err and "allowed: sample_id" in err
