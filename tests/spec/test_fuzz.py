"""Whatever a spec file holds, loading it gives a valid JobSpec or a SpecError, never another exception;
through the CLI that is exit 0 or 2 with no traceback. Valid results also dump, reload and render."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import REPO

from hpc_train.cli.main import main
from hpc_train.errors import SpecError
from hpc_train.render import RenderContext, render_sbatch
from hpc_train.spec import JobSpec, dump_spec, parse_spec, validate_spec
from hpc_train.spec.load import SpecLoader

# HPC_TRAIN_FUZZ_EXAMPLES=5000 pytest tests/spec/test_fuzz.py searches longer than the default run.
FUZZ = settings(max_examples=int(os.environ.get("HPC_TRAIN_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
BASES = [yaml.load(path.read_text(), Loader=SpecLoader) for path in sorted((REPO / "configs").glob("*.yaml"))]

# Field names and values that mean something to a spec, so that mutations reach deep validators.
FIELD_NAMES = [
    "name", "model", "type", "hyperparameters", "hidden_sizes", "dropout", "data", "train_path", "val_path",
    "target", "training", "epochs", "early_stopping", "distributed", "strategy", "backend", "resources",
    "nodes", "tasks_per_node", "gpus_per_node", "memory", "time", "partition", "constraint", "modules", "env",
    "venv", "extra_sbatch", "container", "image", "binds", "checkpoint", "dir", "preemption", "signal",
    "grace_seconds", "sweep", "param_space", "cv", "metric", "output_dir",
]
MEANINGFUL = st.sampled_from([
    "8GB", "8XB", "1:30:00", "25:61:00", "1-00:00:00", "90", "sklearn:iris", "sklearn:mnist", "data.csv",
    "gloo", "nccl", "ddp", "data_parallel", "horovod", "USR1", "KILL", "svm", "neural_network",
    "pkg.mod:make",
    "--exclusive", "--gres=gpu:1", "gpu&a100", "a b", "$(touch PWNED)", "", "-", "~", "0", "-1", "1e-3",
])
SCALARS = (st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats(allow_nan=True)
           | st.text(max_size=12) | MEANINGFUL | st.integers(0, 4))
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=8,
)
YAML_ALPHABET = st.sampled_from(list("abnmeytp019:-[]{},#&*!|>'\"%@`?~ \t\n.\\") + ["\x00", "\xe9", "\ufeff"])
YAML_TEXT = (
    st.text(YAML_ALPHABET, max_size=120)
    | st.text(max_size=80)
    | VALUES.map(lambda value: yaml.safe_dump(value, allow_unicode=True))
    | st.dictionaries(KEYS, VALUES, max_size=6).map(yaml.safe_dump)
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into mappings and lists of a parsed document."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append(prefix + (key,))
        found += _paths(child, prefix + (key,))
    return found


def _containers(node: Any, found: list[Any] | None = None) -> list[dict[Any, Any]]:
    found = [] if found is None else found
    if isinstance(node, dict):
        found.append(node)
        for child in node.values():
            _containers(child, found)
    elif isinstance(node, list):
        for child in node:
            _containers(child, found)
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "add", "delete"]))
        paths = _paths(doc)
        if action == "add" or not paths:
            target = draw(st.sampled_from(_containers(doc) or [doc]))
            target[draw(KEYS)] = draw(VALUES)
            continue
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return doc


def check_valid(spec: JobSpec) -> None:
    """A spec that validated must survive the dump/load round trip and render to valid bash."""
    text = dump_spec(spec)
    again = parse_spec(text)
    assert dump_spec(again) == text  # compared as text: NaN != NaN
    assert again.resources == spec.resources and again.name == spec.name
    script = render_sbatch(spec, RenderContext(spec_path="/runs/f/spec.yaml", run_dir="/runs/f"))
    proc = subprocess.run(["bash", "-n"], check=False, input=script, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr + script


@FUZZ
@given(YAML_TEXT)
def test_random_yaml_text_is_a_spec_or_a_spec_error(text: str) -> None:
    try:
        spec = parse_spec(text, file="fuzz.yaml")
    except SpecError as error:
        assert str(error).startswith("fuzz.yaml")
        event("SpecError")
        return
    event("valid")
    check_valid(spec)


@FUZZ
@given(mutated_specs())
def test_mutated_specs_are_a_spec_or_a_spec_error(doc: Any) -> None:
    try:
        spec = validate_spec(doc, file="mutated.yaml")
    except SpecError as error:
        assert str(error).startswith("mutated.yaml")
        event(f"SpecError at {error.key}")
        return
    event("valid")
    check_valid(spec)


@FUZZ
@given(mutated_specs(), st.lists(st.tuples(
    st.sampled_from([*FIELD_NAMES, "resources.memory", "training.epochs", "model.type", "name.x", "a..b"]),
    SCALARS.map(str)), max_size=2))
def test_mutated_specs_with_overrides(doc: Any, overrides: list[tuple[str, str]]) -> None:
    try:
        spec = parse_spec(yaml.safe_dump(doc), file="o.yaml", overrides=[f"{k}={v}" for k, v in overrides])
    except SpecError:
        return
    assert isinstance(spec, JobSpec)


@FUZZ
@given(YAML_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=120)
       | mutated_specs().map(lambda doc: yaml.safe_dump(doc).encode()))
def test_cli_validate_exits_0_or_2_without_traceback(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_bytes(content)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(path)])
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    if code == 0:
        assert out.getvalue().endswith(f"# {path}: valid\n")
        # a valid spec may hold values that cannot apply to its job: one warning line each, nothing else
        lines = err.getvalue().splitlines()
        assert all(line.startswith(f"hpc-train: warning: {path}: ") for line in lines), err.getvalue()
        assert len({line.split(": ")[3] for line in lines}) == len(lines)
    else:
        assert err.getvalue().startswith(f"hpc-train: error: {path}")
