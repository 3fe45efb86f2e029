"""Parsing `sacct -X -n -P -o JobID,State`: pure, no cluster. The lines are what the local
cluster printed for each case."""

from __future__ import annotations

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
