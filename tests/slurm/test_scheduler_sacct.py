"""Parsing `sacct -X -n -P -o JobID,State`: pure, no cluster. The lines are what the local
cluster printed for each case."""

from __future__ import annotations

import pytest

from hpc_train.registry import JobRecord
from hpc_train.scheduler import slurm
from hpc_train.scheduler.sacct import parse_sacct
from hpc_train.status import JobStatus


def test_tasks_that_ran_have_their_own_lines() -> None:
    text = "95_0|COMPLETED\n95_1|FAILED\n95_2|RUNNING\n96|CANCELLED by 0\n"
    assert parse_sacct(text, ["95_0", "95_1", "95_2", "96", "97"]) == {
        "95_0": JobStatus.COMPLETED, "95_1": JobStatus.FAILED, "95_2": JobStatus.RUNNING, "96": JobStatus.CANCELLED}


def test_pending_range_with_throttle_stands_for_each_task() -> None:
    text = "8_0|RUNNING\n8_1|RUNNING\n8_[2-5%2]|PENDING\n"
    states = parse_sacct(text, [f"8_{i}" for i in range(7)])
    assert states == {"8_0": JobStatus.RUNNING, "8_1": JobStatus.RUNNING,
                      **{f"8_{i}": JobStatus.PENDING for i in range(2, 6)}}


def test_array_cancelled_while_pending_is_one_range_line() -> None:
    assert set(parse_sacct("7_[0-4]|CANCELLED by 0\n", [f"7_{i}" for i in range(5)]).values()) == {
        JobStatus.CANCELLED}


def test_array_whose_tasks_were_cancelled_one_by_one_is_one_plain_line() -> None:
    # `scancel 1555_0 ... 1555_4` on a held array leaves only the line `1555`
    states = parse_sacct("1555|CANCELLED by 0\n", [f"1555_{i}" for i in range(5)])
    assert states == {f"1555_{i}": JobStatus.CANCELLED for i in range(5)}


# -- a run that ended in failure is not the job's end while slurmctld still holds the job


def _records(*ids: str) -> list[JobRecord]:
    return [JobRecord(id=f"hpc{i}", name="j", kind="job", executor="slurm", scheduler_id=i, run_dir=f"/nonexistent/{i}",
                      status=JobStatus.RUNNING) for i in ids]


def test_failed_or_preempted_run_of_a_job_slurm_holds_again_is_requeued(monkeypatch: pytest.MonkeyPatch) -> None:
    """sacct's answers as SLURM gives them right after a node failure (NODE_FAIL) or a preemption; squeue's
    as slurmctld holds the requeued jobs. Canned text: producing a node failure takes a minute (see
    tests/slurm for the real cluster), this checks the mapping of every combination."""
    sacct = {"10": JobStatus.FAILED, "11": JobStatus.FAILED, "12": JobStatus.PREEMPTED, "13": JobStatus.COMPLETED,
             "14": JobStatus.PREEMPTED}
    monkeypatch.setattr(slurm, "query_states", lambda ids: {i: sacct[i] for i in ids})
    monkeypatch.setattr(slurm, "queue_states", lambda: {"10": JobStatus.PENDING, "12": JobStatus.RUNNING})
    result = slurm.slurm_statuses(_records("10", "11", "12", "13", "14"))
    assert result == {"hpc10": JobStatus.REQUEUED, "hpc11": JobStatus.FAILED, "hpc12": JobStatus.RUNNING,
                      "hpc13": JobStatus.COMPLETED, "hpc14": JobStatus.PREEMPTED}


def test_squeue_is_asked_only_when_a_run_ended_in_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "query_states", lambda ids: dict.fromkeys(ids, JobStatus.COMPLETED))

    def no_squeue() -> dict[str, JobStatus]:
        raise AssertionError("squeue asked although every job completed")

    monkeypatch.setattr(slurm, "queue_states", no_squeue)
    assert set(slurm.slurm_statuses(_records("1", "2")).values()) == {JobStatus.COMPLETED}
