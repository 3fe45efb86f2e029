"""Good specs: the unit forms people write, `--set` overrides, defaults, and dump/load round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support import REPO

from hpc_train.errors import SpecError
from hpc_train.spec import JobSpec, dump_spec, load_spec, parse_spec
from hpc_train.spec.units import format_slurm_time, parse_time_seconds

HEAD = "name: t\nmodel: {type: random_forest}\n"
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def with_resources(text: str) -> JobSpec:
    return parse_spec(HEAD + f"resources: {{{text}}}\n")


@pytest.mark.parametrize("form", ["8GB", "8G", "8192M", "8192", "8192MB", "8gb", "8 GB", "8GiB", "8.0G",
                                  "'8192'"])
def test_memory_forms_mean_8192_megabytes(form: str) -> None:
    assert with_resources(f"memory: {form}").resources.memory == 8192


def test_memory_integer_is_megabytes_and_other_units() -> None:
    assert with_resources("memory: 8192").resources.memory == 8192
    assert with_resources("memory: 0.5G").resources.memory == 512
    assert with_resources("memory: 1T").resources.memory == 1024 * 1024
    assert with_resources("memory: 2048K").resources.memory == 2


@pytest.mark.parametrize("form,seconds", [
    ("'01:30:00'", 5400),          # HH:MM:SS
    ("1:30:00", 5400),             # unquoted: YAML 1.1 would read a base-60 number, the loader does not
    ("'2-00:00:00'", 2 * 86400),   # D-HH:MM:SS
    ("1-12:30:15", 86400 + 12 * 3600 + 30 * 60 + 15),
    ("90", 90 * 60),               # an integer is minutes, as for sbatch --time
    ("'90'", 90 * 60),
    ("'30:00'", 30 * 60),          # MM:SS
    ("45:30", 45 * 60 + 30),
    ("1-12", 86400 + 12 * 3600),   # D-HH
    ("'1-02:30'", 86400 + 2 * 3600 + 30 * 60),  # D-HH:MM
    ("'100:00:00'", 100 * 3600),   # hours may exceed 24
])
def test_time_forms(form: str, seconds: int) -> None:
    spec = with_resources(f"time: {form}")
    assert spec.resources.time == seconds
    assert parse_time_seconds(spec.resources.time_slurm) == seconds


def test_time_default_is_one_hour() -> None:
    spec = parse_spec(HEAD)
    assert spec.resources.time == 3600
    assert spec.resources.time_slurm == "0-01:00:00"


def test_time_override_with_colons() -> None:
    assert parse_spec(HEAD, overrides=["resources.time=2:00:00"]).resources.time == 7200


@given(st.integers(min_value=1, max_value=400 * 86400))
@settings(max_examples=200, deadline=None)
def test_slurm_time_round_trip(seconds: int) -> None:
    assert parse_time_seconds(format_slurm_time(seconds)) == seconds


# -- --set overrides


def test_set_scalar_values_are_yaml() -> None:
    spec = parse_spec(HEAD, overrides=["training.epochs=5", "data.standardize=false", "resources.memory=8GB",
                                       "training.learning_rate=0.01", "name=renamed"])
    assert spec.training.epochs == 5
    assert spec.data.standardize is False
    assert spec.resources.memory == 8192
    assert spec.training.learning_rate == pytest.approx(0.01)
    assert spec.name == "renamed"


def test_set_flow_values_and_later_wins() -> None:
    spec = parse_spec(HEAD, overrides=["resources.modules=[cuda/12, gcc]",
                                       "model.hyperparameters={max_depth: 3}",
                                       "training.epochs=2", "training.epochs=7"])
    assert spec.resources.modules == ["cuda/12", "gcc"]
    assert spec.model.hyperparameters == {"max_depth": 3}
    assert spec.training.epochs == 7


def test_set_creates_nested_mappings() -> None:
    spec = parse_spec("name: t\nmodel: {type: 'mypackage.models:wide_mlp'}\n",
                      overrides=["training.early_stopping.patience=3", "resources.env.FOO=bar baz",
                                 "model.hyperparameters.width=64"])
    assert spec.training.early_stopping is not None
    assert spec.training.early_stopping.patience == 3
    assert spec.resources.env == {"FOO": "bar baz"}
    assert spec.model.hyperparameters == {"width": 64}


def test_set_empty_value_is_empty_string_and_does_not_touch_the_input() -> None:
    data: dict[str, Any] = {"name": "t", "model": {"type": "svm"}}
    spec = parse_spec(data, overrides=["resources.env.EMPTY="])
    assert spec.resources.env == {"EMPTY": ""}
    assert "resources" not in data, "overrides must not change the caller's mapping"


def test_set_inside_a_scalar_is_an_error() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(HEAD + "training: {epochs: 3}\n", overrides=["training.epochs.max=3"])
    assert error.value.key == "training.epochs"
    assert error.value.file == "--set"


def test_cli_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hpc_train.cli.main import main

    path = tmp_path / "s.yaml"
    path.write_text(HEAD)
    assert main(["validate", str(path), "--set", "training.seed=7", "--set", "resources.time=30"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["training"]["seed"] == 7
    assert parse_time_seconds(shown["resources"]["time"]) == 30 * 60


# -- configs and round trips


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == yaml.safe_load(path.read_text())["name"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_dump_then_load_gives_the_same_spec(path: Path) -> None:
    spec = load_spec(path)
    again = parse_spec(dump_spec(spec))
    assert again == spec
    assert dump_spec(again) == dump_spec(spec)


def _key_paths(model: type[Any], prefix: str = "") -> list[str]:
    from hpc_train.spec.load import _section_type

    paths = []
    for name, field in model.model_fields.items():
        paths.append(prefix + name)
        section = _section_type(field.annotation)
        if section is not None:
            paths += _key_paths(section, f"{prefix}{name}.")
    return paths


def test_reference_config_shows_every_key() -> None:
    raw = yaml.safe_load((REPO / "configs" / "reference.yaml").read_text())
    missing = []
    for path in _key_paths(JobSpec):
        node: Any = raw
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(path)
                break
            node = node[part]
    assert not missing, f"configs/reference.yaml does not show: {missing}"


def test_reference_config_comments_every_key() -> None:
    """Every key of the schema has a comment line right above it (entries of free-form maps need none)."""
    free_form = ("env", "param_space", "hyperparameters")
    lines = (REPO / "configs" / "reference.yaml").read_text().splitlines()
    parents: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")):
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if not (parents and parents[-1][1] in free_form):
            assert lines[index - 1].strip().startswith("#"), f"reference.yaml: {key!r} has no comment"
        parents.append((indent, key))
