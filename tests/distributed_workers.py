"""Worker functions for tests/test_distributed.py (importable by name, as run_processes needs)."""

from __future__ import annotations

import subprocess
import sys
import time

import torch
import torch.distributed as dist


def fail_on_rank(rank: int) -> float:
    if dist.get_rank() == rank:
        started = subprocess.Popen(["sleep", "600"])  # a process of its own, left running
        raise ValueError(f"rank {rank} gave up, leaving process {started.pid} running")
    t = torch.ones(1)
    dist.all_reduce(t)  # waits for the failed rank
    return t.item()


def sleep_forever() -> None:
    time.sleep(3600)


def exit_early() -> None:
    sys.exit(0)


def leave_the_group() -> int:
    dist.destroy_process_group()
    return 7


def fail_at_length() -> None:
    raise ValueError("x" * 5_000_000)
