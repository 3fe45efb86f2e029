"""Why the previous run of a requeued job ended (hpc_train/runtime/faults.py), from canned sacct -D lines;
the preemption campaign (tests/slurm/test_preemption.py) checks it on the real cluster."""

from __future__ import annotations

import pytest

from hpc_train.runtime.faults import last_ended_run, previous_run_fault


@pytest.mark.parametrize(("sacct", "said"), [
    ("NODE_FAIL|n2|2026-12-01T11:02:03\nRUNNING|n1|Unknown\n", "NODE_FAIL on n2 at 2026-12-01T11:02:03"),
    ("PREEMPTED|n1|2026-12-01T11:00:00\nREQUEUED|n1|2026-12-01T11:00:01\nRUNNING|n2|Unknown\n",
     "PREEMPTED on n1 at 2026-12-01T11:00:00"),
    ("REQUEUED|n[1-2]|2026-12-01T11:00:01\nRUNNING|n1|Unknown\n", "requeued from n[1-2] at 2026-12-01T11:00:01"),
    ("CANCELLED by 0|n1|2026-12-01T10:00:00\nRUNNING|n1|Unknown\n", "CANCELLED on n1 at 2026-12-01T10:00:00"),
    ("RUNNING|n1|Unknown\n", None),
    ("", None),
])
def test_last_ended_run(sacct: str, said: str | None) -> None:
    assert last_ended_run(sacct) == said


@pytest.mark.parametrize("status", ["requeued", "preempted", "timeout"])
def test_a_run_that_checkpointed_on_the_signal_says_so_without_asking_slurm(status: str) -> None:
    # requeued: rank 0 asked SLURM itself (torch_runner._preempted); preempted: the batch shell requeues
    said = previous_run_fault({"status": status, "preempted_by": "SIGUSR1"}, None)
    assert said.startswith("checkpointed and requeued on SIGUSR1")


def test_an_earlier_notice_does_not_explain_a_later_crash() -> None:
    # the second run wrote running over the first one's requeued; then its node failed: no notice of its own
    said = previous_run_fault({"status": "running", "preempted_by": "SIGUSR1"}, None)
    assert "without a checkpoint notice" in said


def test_a_run_that_left_no_word_and_no_accounting() -> None:
    assert "without a checkpoint notice" in previous_run_fault({"status": "running"}, None)
