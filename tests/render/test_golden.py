"""Rendered sbatch scripts and Apptainer definitions against recorded golden copies.

A change in rendering shows up here as a diff. When the change is intended, refresh the copies:
    HPC_TRAIN_UPDATE_GOLDEN=1 pytest tests/render
and review `git diff tests/golden` before committing.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path

import pytest
from sbatch_directives import sbatch_arguments, sbatch_options
from support import REPO

from hpc_train.errors import SpecError
from hpc_train.render import RenderContext, job_environment, render_apptainer, render_sbatch
from hpc_train.spec import JobSpec, load_spec, parse_spec

GOLDEN = REPO / "tests" / "golden"
CONFIGS = sorted(path.stem for path in (REPO / "configs").glob("*.yaml"))
UPDATE_ENV = "HPC_TRAIN_UPDATE_GOLDEN"


def fixed_context(name: str, **extra: object) -> RenderContext:
    """The same paths on every machine, so the golden files do not depend on where tests run."""
    return RenderContext(spec_path=f"/runs/{name}/spec.yaml", run_dir=f"/runs/{name}", python="python3",
                         **extra)  # type: ignore[arg-type]


def config(name: str) -> JobSpec:
    return load_spec(REPO / "configs" / f"{name}.yaml")


def assert_matches_golden(text: str, golden: Path) -> None:
    """Compare with the recorded copy; with HPC_TRAIN_UPDATE_GOLDEN=1, record it instead."""
    refresh = f"if the change is intended, refresh with: {UPDATE_ENV}=1 pytest tests/render"
    if os.environ.get(UPDATE_ENV) == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        return
    if not golden.exists():
        pytest.fail(f"no golden file {golden}; {refresh}")
    expected = golden.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True),
                                            text.splitlines(keepends=True),
                                            fromfile=str(golden), tofile="rendered now"))
        pytest.fail(f"rendered output differs from {golden.name}; {refresh}\n{diff}")


def bash_syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"bash -n failed:\n{proc.stderr}\n{script}"


def test_every_config_has_a_golden_test() -> None:
    assert {"quickstart", "mlp", "reference"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_sbatch_matches_golden(name: str) -> None:
    assert_matches_golden(render_sbatch(config(name), fixed_context(name)), GOLDEN / f"{name}.sbatch")


def test_reference_apptainer_def_matches_golden() -> None:
    spec = config("reference")
    assert spec.container is not None, "the reference spec must show the container section"
    assert_matches_golden(render_apptainer(spec), GOLDEN / "reference.apptainer.def")


def test_golden_mismatch_says_how_to_refresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UPDATE_ENV, raising=False)
    golden = tmp_path / "x.sbatch"
    golden.write_text("#!/bin/bash\necho old\n")
    with pytest.raises(pytest.fail.Exception) as failure:
        assert_matches_golden("#!/bin/bash\necho new\n", golden)
    assert f"{UPDATE_ENV}=1 pytest tests/render" in str(failure.value)
    assert "-echo old" in str(failure.value) and "+echo new" in str(failure.value)
    monkeypatch.setenv(UPDATE_ENV, "1")
    assert_matches_golden("#!/bin/bash\necho new\n", golden)
    assert golden.read_text() == "#!/bin/bash\necho new\n"


@pytest.mark.parametrize("name", CONFIGS)
def test_rendered_script_passes_bash_n(name: str, tmp_path: Path) -> None:
    bash_syntax_ok(render_sbatch(config(name), fixed_context(name)), tmp_path)


@pytest.mark.parametrize("name", CONFIGS)
def test_required_directives(name: str) -> None:
    spec = config(name)
    script = render_sbatch(spec, fixed_context(name))
    options = sbatch_options(script)
    r = spec.resources
    assert options["--job-name"] == spec.name
    assert options["--nodes"] == str(r.nodes)
    assert options["--ntasks-per-node"] == str(r.tasks_per_node)
    assert options["--cpus-per-task"] == str(r.cpus_per_task)
    assert options["--mem"] == f"{r.memory}M"
    assert options["--time"] == r.time_slurm
    assert options["--open-mode"] == "append"
    assert options["--output"] == f"/runs/{name}/logs/%x-%j.out"
    assert options["--error"] == f"/runs/{name}/logs/%x-%j.err"
    if spec.preemption.requeue:
        grace = spec.preemption.grace_seconds
        assert f"#SBATCH --signal=B:{spec.preemption.signal}@{grace}" in script.splitlines()
        assert "--requeue" in options
    for option in ("partition", "account", "qos", "constraint"):
        assert options.get(f"--{option}") == getattr(r, option)
    for extra in r.extra_sbatch:
        assert extra in sbatch_arguments(script)
    assert ("--gpus-per-node" in options) == (r.gpus_per_node > 0)
    assert not ("--gpus-per-node" in options and "--gres" in options), "--gpus-per-node together with --gres"
    assert "--array" not in options and "--dependency" not in options
    assert "srun --mpi=pmix" in script


def test_reference_shows_gpus_container_and_every_sbatch_branch() -> None:
    script = render_sbatch(config("reference"), fixed_context("reference"))
    options = sbatch_options(script)
    for option in ("--gpus-per-node", "--partition", "--account", "--qos", "--constraint", "--signal"):
        assert option in options, option
    assert "apptainer exec --nv --bind" in script
    assert "module load" in script and "export " in script


def test_array_and_dependency_when_given(tmp_path: Path) -> None:
    spec = config("quickstart")
    script = render_sbatch(spec, fixed_context("quickstart", array="0-9%2", dependency="afterok:123"))
    options = sbatch_options(script)
    assert options["--array"] == "0-9%2"
    assert options["--dependency"] == "afterok:123"
    assert options["--output"].endswith("/logs/%x-%A_%a.out"), "array tasks need their own log files"
    bash_syntax_ok(script, tmp_path)


def spec_with(**sections: object) -> JobSpec:
    return parse_spec({"name": "t", "model": {"type": "neural_network"}, **sections})


def test_gres_in_extra_sbatch_without_gpus_is_kept_alone() -> None:
    script = render_sbatch(spec_with(resources={"extra_sbatch": ["--gres=gpu:a100:1"]}), fixed_context("t"))
    options = sbatch_options(script)
    assert options["--gres"] == "gpu:a100:1"
    assert "--gpus-per-node" not in options


@pytest.mark.parametrize("option", ["--gres=gpu:2", "--gres gpu:2", "--gres"])
def test_gres_together_with_gpus_per_node_is_refused(option: str) -> None:
    with pytest.raises(SpecError) as error:
        spec_with(resources={"gpus_per_node": 2, "extra_sbatch": [option]}, distributed={"backend": "nccl"})
    assert error.value.key == "resources.extra_sbatch"
    assert "gpus_per_node" in str(error.value)


def test_gres_flags_is_not_gres() -> None:
    spec = spec_with(resources={"gpus_per_node": 1, "extra_sbatch": ["--gres-flags=enforce-binding"]})
    assert sbatch_options(render_sbatch(spec, fixed_context("t")))["--gres-flags"] == "enforce-binding"


def test_no_requeue_means_no_signal_but_append_stays() -> None:
    options = sbatch_options(render_sbatch(spec_with(preemption={"requeue": False}), fixed_context("t")))
    assert "--signal" not in options and "--requeue" not in options
    assert options["--open-mode"] == "append"


@pytest.mark.parametrize("signal,grace", [("USR2", 30), ("TERM", 600)])
def test_signal_follows_the_spec(signal: str, grace: int) -> None:
    spec = spec_with(preemption={"signal": signal, "grace_seconds": grace})
    script = render_sbatch(spec, fixed_context("t"))
    assert sbatch_options(script)["--signal"] == f"B:{signal}@{grace}"
    assert f'trap "forward_signal {signal}" {signal}' in script


def one_line(script: str) -> str:
    """The script with line continuations joined and runs of blanks made single spaces."""
    return " ".join(script.replace("\\\n", " ").split())


def test_container_launch_line() -> None:
    spec = spec_with(container={"image": "/img/x.sif", "binds": ["/a", "/b:/c:ro"]})
    script = one_line(render_sbatch(spec, fixed_context("t")))
    assert ("srun --mpi=pmix --kill-on-bad-exit=1 apptainer exec --nv --bind /a --bind /b:/c:ro /img/x.sif "
            "python -m hpc_train.runtime.worker --spec /runs/t/spec.yaml --run-dir /runs/t &") in script
    no_nv = render_sbatch(spec_with(container={"image": "/img/x.sif", "nv": False}), fixed_context("t"))
    assert "apptainer exec /img/x.sif" in one_line(no_nv) and "--nv" not in no_nv


def test_no_container_no_apptainer() -> None:
    script = render_sbatch(spec_with(), fixed_context("t"))
    assert "apptainer" not in script
    assert ("srun --mpi=pmix --kill-on-bad-exit=1 python3 -m hpc_train.runtime.worker "
            "--spec /runs/t/spec.yaml --run-dir /runs/t &") in one_line(script)


def test_default_time_is_one_hour() -> None:
    assert sbatch_options(render_sbatch(spec_with(), fixed_context("t")))["--time"] == "0-01:00:00"


def test_apptainer_def_lists_packages_and_env() -> None:
    spec = spec_with(container={"image": "x.sif", "packages": ["tensorboard==2.17"], "base": "python:3.11"},
                     resources={"env": {"FOO": "a b"}})
    text = render_apptainer(spec)
    assert "From: python:3.11" in text
    assert "pip install --no-cache-dir 'tensorboard==2.17'" in text or \
        "pip install --no-cache-dir tensorboard==2.17" in text
    assert "export FOO='a b'" in text
    with pytest.raises(ValueError):
        render_apptainer(spec_with())


def test_torch_jobs_export_huge_pages_for_torch_unless_the_spec_says_otherwise() -> None:
    ctx = fixed_context("t")
    assert job_environment(config("mlp"), ctx)["THP_MEM_ALLOC_ENABLE"] == "1"
    assert "THP_MEM_ALLOC_ENABLE" not in job_environment(config("quickstart"), ctx)  # scikit-learn: no torch
    opted_out = load_spec(REPO / "configs" / "mlp.yaml", overrides=['resources.env.THP_MEM_ALLOC_ENABLE="0"'])
    assert job_environment(opted_out, ctx)["THP_MEM_ALLOC_ENABLE"] == "0"
    assert "export THP_MEM_ALLOC_ENABLE=0\n" in render_sbatch(opted_out, ctx)
