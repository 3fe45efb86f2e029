"""A built hpc-train wheel installed into a new venv, used from a folder that is not the repository.

The new venv sees the dependencies through a .pth file listing this environment's site-packages,
written after the install: tests have no network beyond the package index, and torch (hundreds of
MB) must not be downloaded again. The .pth adds that folder as a plain path, so its own .pth files
(the editable install of this checkout) are not run and cannot hide the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from support import REPO


@dataclass(frozen=True)
class InstalledWheel:
    venv: Path
    files: set[str]  # the wheel's file list
    work: Path  # an empty folder outside the repository to run in
    env: dict[str, str]

    @property
    def cli(self) -> str:
        return str(self.venv / "bin" / "hpc-train")


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # output to files, as with `> out.txt`: a local submit's job would hold a pipe open until it ends
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err, timeout=timeout,
                              check=False).returncode
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(argv, code, out.read(), err.read())
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    return proc


def source_copy(target: Path) -> Path:
    """The files git would hold (symbolic links kept), so that building leaves the checkout alone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.exists() and not source.is_symlink():  # deleted in the work tree, not yet in git
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    return target


def install_wheel(tmp_path: Path) -> InstalledWheel:
    """Build the wheel from a copy of the checkout, install it into tmp_path/venv, check where it imports from."""
    wheels = tmp_path / "wheels"
    # SLURM_CONF stays: it names the test cluster (no SLURM job variables, no launcher variables)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HPC_TRAIN_TEMPLATES")
             and (not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_")) or k == "SLURM_CONF")}
    source = source_copy(tmp_path / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, cwd=tmp_path, env=clean, timeout=300)
    (wheel,) = wheels.glob("hpc_train-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps", str(wheel)],
                   check=True, env=clean, timeout=300)
    new_site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                    "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
    (new_site / "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(clean, HOME=str(tmp_path), HPC_TRAIN_HOME=str(tmp_path / "registry"), OMP_NUM_THREADS="1")
    where = run_cli([str(venv / "bin" / "python"), "-c", "import hpc_train; print(hpc_train.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    return InstalledWheel(venv, set(zipfile.ZipFile(wheel).namelist()), work, env)
