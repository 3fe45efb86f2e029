"""containers/hpc-train.def: Apptainer cannot run here (no setuid, no image registry), so the
definition is checked statically: its sections exist and every file it copies is in the repo."""

from __future__ import annotations

from support import REPO

DEF = REPO / "containers" / "hpc-train.def"


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {"header": []}
    current = "header"
    for line in text.splitlines():
        if line.startswith("%"):
            current = line.split()[0][1:]
            sections[current] = []
        elif line.strip() and not line.lstrip().startswith("#"):
            sections[current].append(line.strip())
    return sections


def test_definition_has_the_sections_apptainer_needs() -> None:
    sections = _sections(DEF.read_text())
    assert any(line.startswith("Bootstrap: docker") for line in sections["header"])
    assert any(line.startswith("From: ") for line in sections["header"])
    for name in ("labels", "files", "post", "environment", "runscript", "test"):
        assert sections.get(name), f"%{name} missing or empty"


def test_every_copied_file_exists_in_the_repository() -> None:
    for line in _sections(DEF.read_text())["files"]:
        source = line.split()[0]
        assert (REPO / source).exists(), f"%files copies {source}, which is not in the repository"


def test_horovod_is_built_by_the_project_script() -> None:
    post = "\n".join(_sections(DEF.read_text())["post"])
    assert "install_horovod.sh" in post and "HOROVOD_GPU_OPERATIONS=NCCL" in post
