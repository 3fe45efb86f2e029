"""Hostile strings in every spec field that reaches the job script.

Each value is either refused by validation (names that SLURM restricts, control characters) or it
reaches the programs the script starts exactly as written. The rendered script really runs under
bash; only `srun`, `apptainer` and `module` are fakes (first on PATH), because they cannot run
here: they record their argv and environment NUL-separated and start nothing (srun execs the
fake apptainer when the step goes through a container). `#SBATCH` lines are comments to bash, so
for them we check what sbatch's own parser makes of the line (tests/render/sbatch_directives.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sbatch_directives import sbatch_arguments, sbatch_options

from hpc_train.errors import SpecError, UserError
from hpc_train.jobs import prepare_job
from hpc_train.render import RenderContext, render_sbatch, worker_command
from hpc_train.render.shell import env_name, sbatch_quote
from hpc_train.spec import JobSpec, load_spec, parse_spec
from hpc_train.spec.model import CONTROL

NASTY = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "; rm -rf ~",
    "; touch PWNED #",
    "'",
    '"',
    "x' ; touch PWNED ; echo '",
    "a\nb",
    "a\rb",
    "\\",
    "trailing\\",
    "$HOME",
    "*",
    "~",
    "a b",
    "-rf",
    "#",
    "%x",
    "ü€",
]

FAKE_SRUN = """#!/bin/bash
printf '%s\\0' "$@" > "$RECORD/srun.argv"
env -0 > "$RECORD/srun.env"
while [[ $# -gt 0 && $1 == --* ]]; do shift; done
if [[ ${1:-} == apptainer ]]; then exec "$@"; fi
"""
FAKE_APPTAINER = """#!/bin/bash
printf '%s\\0' "$@" > "$RECORD/apptainer.argv"
"""
FAKE_MODULE = """#!/bin/bash
printf '%s\\0' "$@" >> "$RECORD/module.argv"
"""
# sourced instead of a real virtual environment's bin/activate: records the path it was sourced by
FAKE_ACTIVATE = """printf '%s\\0' "${BASH_SOURCE[0]}" >> "$RECORD/venv.sourced"
"""


def base_spec(**sections: Any) -> dict[str, Any]:
    return {"name": "nasty", "model": {"type": "neural_network"}, **sections}


def context(run_dir: str = "/runs/nasty") -> RenderContext:
    return RenderContext(spec_path=f"{run_dir}/spec.yaml", run_dir=run_dir, python="python3")


class Sandbox:
    """A temp dir with HOME, a work dir, fake srun/apptainer/module and a record dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.work = root / "work"
        self.record = root / "record"
        self.bin = root / "fakebin"
        root.mkdir(parents=True, exist_ok=True)
        for folder in (self.home, self.work, self.record, self.bin):
            folder.mkdir()
        (self.home / "sentinel").write_text("still here")
        for name, text in (("srun", FAKE_SRUN), ("apptainer", FAKE_APPTAINER), ("module", FAKE_MODULE)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        path = self.root / "job.sbatch"
        path.write_text(script)
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.home), "RECORD": str(self.record),
               "LANG": "C.UTF-8"}
        return subprocess.run(["bash", str(path)], check=False, cwd=self.work, env=env, capture_output=True,
                              text=True, timeout=30)

    def words(self, name: str) -> list[str] | None:
        path = self.record / name
        if not path.exists():
            return None
        data = path.read_bytes().decode()
        assert data.endswith("\0")
        return data[:-1].split("\0")

    def environment(self) -> dict[str, str]:
        entries = (self.record / "srun.env").read_bytes().decode().split("\0")
        return dict(entry.split("=", 1) for entry in entries if entry)

    def assert_nothing_else_ran(self, proc: subprocess.CompletedProcess[str]) -> None:
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", proc.stderr
        pwned = [str(p) for p in self.root.rglob("PWNED")]
        assert not pwned, f"injected command ran: {pwned}"
        assert (self.home / "sentinel").read_text() == "still here"
        assert sorted(p.name for p in self.home.iterdir()) == ["sentinel"]


def run_spec_script(tmp_path: Path, spec: JobSpec, ctx: RenderContext | None = None,
                    before: Any = None) -> tuple[Sandbox, str]:
    box = Sandbox(tmp_path)
    if before is not None:
        before(box)
    script = render_sbatch(spec, ctx or context())
    proc = box.run(script)
    box.assert_nothing_else_ran(proc)
    return box, script


def worker_argv(ctx: RenderContext) -> list[str]:
    return ["python3", "-m", "hpc_train.runtime.worker", "--spec", ctx.spec_path, "--run-dir", ctx.run_dir]


def accepted(value: str) -> bool:
    """Body values are refused only for control characters (a newline would break #SBATCH and
    Apptainer definition lines, a NUL cannot reach a process)."""
    return CONTROL.search(value) is None


# -- fields that only reach #SBATCH lines: SLURM restricts them, validation refuses the rest


SHELL_SPECIAL = set("$`;'\"\\ \t\n\r#~")
DIRECTIVE_FIELDS = {"name": "--job-name", "resources.partition": "--partition",
                    "resources.account": "--account", "resources.qos": "--qos",
                    "resources.constraint": "--constraint"}


@pytest.mark.parametrize("value", NASTY, ids=repr)
@pytest.mark.parametrize("field", sorted(DIRECTIVE_FIELDS))
def test_sbatch_names_with_unsafe_characters_are_refused(field: str, value: str, tmp_path: Path) -> None:
    data = base_spec()
    section, _, key = field.rpartition(".")
    (data.setdefault(section, {}) if section else data)[key] = value
    if SHELL_SPECIAL & set(value):
        with pytest.raises(SpecError) as error:
            parse_spec(data)
        assert error.value.key == field
        return
    try:
        spec = parse_spec(data)
    except SpecError as error:
        assert error.key == field
        return
    # accepted (e.g. `*` in a constraint): sbatch must read it back unchanged, bash must ignore it
    _, script = run_spec_script(tmp_path, spec)
    assert sbatch_options(script)[DIRECTIVE_FIELDS[field]] == value


# -- fields that reach the script body: refused for control characters, otherwise verbatim


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_module_names_arrive_verbatim(value: str, tmp_path: Path) -> None:
    data = base_spec(resources={"modules": [value, "plain/1.0"]})
    if not accepted(value):
        with pytest.raises(SpecError, match="control character"):
            parse_spec(data)
        return
    box, _ = run_spec_script(tmp_path, parse_spec(data))
    assert box.words("module.argv") == ["load", value, "load", "plain/1.0"]
    assert box.words("srun.argv") == ["--mpi=pmix", "--kill-on-bad-exit=1", *worker_argv(context())]


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_env_values_arrive_verbatim(value: str, tmp_path: Path) -> None:
    data = base_spec(resources={"env": {"NASTY_VALUE": value, "HOME_COPY": "$HOME"}})
    if not accepted(value):
        with pytest.raises(SpecError) as error:
            parse_spec(data)
        assert error.value.key == "resources.env"
        return
    box, _ = run_spec_script(tmp_path, parse_spec(data))
    env = box.environment()
    assert env["NASTY_VALUE"] == value
    assert env["HOME_COPY"] == "$HOME"
    assert env["HPC_TRAIN_RUN_DIR"] == "/runs/nasty"
    assert env["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_venv_is_sourced_from_exactly_that_path(value: str, tmp_path: Path) -> None:
    data = base_spec(resources={"venv": value})
    if not accepted(value):
        with pytest.raises(SpecError):
            parse_spec(data)
        return

    def make_venv(box: Sandbox) -> None:
        # a relative venv is relative to the job's working directory; ~ is not expanded
        activate = box.work / value / "bin" / "activate"
        activate.parent.mkdir(parents=True)
        activate.write_text(FAKE_ACTIVATE)

    box, _ = run_spec_script(tmp_path, parse_spec(data), before=make_venv)
    assert box.words("venv.sourced") == [f"{value}/bin/activate"]
    assert box.words("srun.argv") is not None


@pytest.mark.parametrize("value", NASTY, ids=repr)
@pytest.mark.parametrize("field", ["image", "binds"])
def test_container_values_arrive_verbatim(field: str, value: str, tmp_path: Path) -> None:
    container = {"image": value} if field == "image" else {"image": "img.sif", "binds": [value, "/data"]}
    data = base_spec(container=container)
    if not accepted(value):
        with pytest.raises(SpecError) as error:
            parse_spec(data)
        assert error.value.key == f"container.{field}"
        return
    box, _ = run_spec_script(tmp_path, parse_spec(data))
    launcher = ["exec", "--nv", "--bind", value, "--bind", "/data", "img.sif"] if field == "binds" \
        else ["exec", "--nv", value]
    worker = ["python", *worker_argv(context())[1:]]
    assert box.words("apptainer.argv") == [*launcher, *worker]
    assert box.words("srun.argv") == ["--mpi=pmix", "--kill-on-bad-exit=1", "apptainer", *launcher, *worker]


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_output_dir_reaches_run_dir_logs_and_worker_verbatim(value: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = base_spec(output_dir=value)
    if not accepted(value):
        with pytest.raises(SpecError) as error:
            parse_spec(data)
        assert error.value.key == "output_dir"
        return
    monkeypatch.chdir(tmp_path)
    prepared = prepare_job(parse_spec(data), base_dir=tmp_path, job_id="abc123", write=False)
    run_dir = prepared.context.run_dir
    assert run_dir == str((tmp_path / value / "nasty-abc123").absolute())
    ctx = RenderContext(spec_path=prepared.context.spec_path, run_dir=run_dir, python="python3")
    box, script = run_spec_script(tmp_path / "box", prepared.spec, ctx)
    assert box.words("srun.argv") == ["--mpi=pmix", "--kill-on-bad-exit=1", *worker_argv(ctx)]
    assert box.environment()["HPC_TRAIN_RUN_DIR"] == run_dir
    options = sbatch_options(script)
    # SLURM expands %x, %j ... in log file names; a literal % in the directory is written %%
    log_dir = run_dir.replace("%", "%%") + "/logs"
    assert options["--output"] == f"{log_dir}/%x-%j.out"
    assert options["--error"] == f"{log_dir}/%x-%j.err"


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_extra_sbatch_values_reach_sbatch_verbatim(value: str, tmp_path: Path) -> None:
    option = f"--comment={value}"
    data = base_spec(resources={"extra_sbatch": [option, "--exclusive"]})
    if not accepted(value):
        with pytest.raises(SpecError) as error:
            parse_spec(data)
        assert error.value.key == "resources.extra_sbatch"
        return
    _, script = run_spec_script(tmp_path, parse_spec(data))
    arguments = sbatch_arguments(script)
    assert arguments[-2:] == [option, "--exclusive"]
    assert sbatch_options(script)["--job-name"] == "nasty", "a bad value must not end the #SBATCH block"


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_array_and_dependency_from_the_command_line(value: str, tmp_path: Path) -> None:
    ctx = RenderContext(spec_path="/r/spec.yaml", run_dir="/r", array=value, dependency=f"afterok:{value}")
    spec = parse_spec(base_spec())
    if "\n" in value or "\r" in value:
        with pytest.raises(UserError, match="newline"):
            render_sbatch(spec, ctx)
        return
    _, script = run_spec_script(tmp_path, spec, ctx)
    options = sbatch_options(script)
    assert options["--array"] == value
    assert options["--dependency"] == f"afterok:{value}"


# -- fields that reach the worker through spec.yaml, not the script text


@pytest.mark.parametrize("value", NASTY, ids=repr)
def test_paths_in_spec_yaml_arrive_verbatim(value: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data = base_spec(data={"train_path": f"/data/{value}.csv", "val_path": f"/data/{value}-val.csv"},
                     checkpoint={"dir": f"/ckpt/{value}"})
    if not accepted(value):
        with pytest.raises(SpecError):
            parse_spec(data)
        return
    monkeypatch.chdir(tmp_path)
    prepared = prepare_job(parse_spec(data), base_dir=tmp_path, run_dir=tmp_path / "run", job_id="x1")
    worker_view = load_spec(prepared.run_dir.spec_path)  # what every rank reads
    assert worker_view.data.train_path == f"/data/{value}.csv"
    assert worker_view.data.val_path == f"/data/{value}-val.csv"
    assert worker_view.checkpoint.dir == os.path.abspath(f"/ckpt/{value}")
    box, _ = run_spec_script(tmp_path / "box", prepared.spec, prepared.context)
    assert box.words("srun.argv") == ["--mpi=pmix", "--kill-on-bad-exit=1",
                                      *worker_command(prepared.spec, prepared.context)]


def test_the_sandbox_notices_an_injection(tmp_path: Path) -> None:
    """The checks above would see a value that was not quoted: a PWNED file or a changed HOME."""
    box = Sandbox(tmp_path)
    proc = box.run("#!/bin/bash\nmodule load $(touch PWNED)\nsrun x\n")
    with pytest.raises(AssertionError, match="injected command ran"):
        box.assert_nothing_else_ran(proc)
    (tmp_path / "work" / "PWNED").unlink()
    proc = box.run("#!/bin/bash\nexport X=a; rm -rf ~/sentinel\n")
    with pytest.raises((AssertionError, FileNotFoundError)):
        box.assert_nothing_else_ran(proc)


@pytest.mark.parametrize("value", ["NCCL_SOCKET_IFNAME\n", "A\n", "\nA"], ids=repr)
def test_filters_match_whole_values_not_up_to_a_final_newline(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        env_name(value)
    with pytest.raises(UserError, match="cannot contain a newline"):
        sbatch_quote(value)
