"""normlab.distributed: real gloo processes start, return results, fail clearly, time out, and leave nothing behind."""

from __future__ import annotations

import functools
import importlib
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from normlab import distributed
from normlab.distributed import WorkerError, leftovers, run_processes
from tests import distributed_workers as workers


def _gone(launch) -> bool:
    """Every process of the launch reaped (no /proc entry: not running, not even a zombie), its port closed."""
    return not any(os.path.exists(f"/proc/{pid}") for pid in launch.pids) and not distributed._listening(launch.port)


def _ends(pid: int, seconds: float = 10.0) -> bool:
    """Whether the process ``pid`` (not our child) stops running within ``seconds``: a killed process
    takes a moment to die, and an orphan stays a zombie until its new parent reaps it."""
    deadline = time.monotonic() + seconds
    while distributed._alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


ADDED_PATH_WORKERS = """
import torch
import torch.distributed as dist


def rank_sum():
    t = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(t)
    return dist.get_rank(), dist.get_world_size(), t.item()
"""


def test_a_worker_found_through_a_folder_the_parent_added_runs_and_results_come_back_by_rank(tmp_path, monkeypatch):
    """A worker importable only through an entry the parent put on sys.path (a notebook's
    sys.path.append("src")): each process gets the parent's sys.path, as torch.multiprocessing.spawn does."""
    (tmp_path / "added_path_workers.py").write_text(ADDED_PATH_WORKERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("added_path_workers")
    try:
        assert str(tmp_path) not in os.environ.get("PYTHONPATH", "")  # found only through sys.path
        results = run_processes(module.rank_sum, world_size=2, timeout=120)
    finally:
        del sys.modules["added_path_workers"]
    assert results == [(0, 2, 1.0), (1, 2, 1.0)]
    assert _gone(distributed.LAUNCHES[-1])
    assert leftovers() == []


def test_a_failing_worker_is_reported_with_its_rank_and_error_and_everything_it_started_is_stopped():
    with pytest.raises(WorkerError) as info:
        run_processes(workers.fail_on_rank, world_size=2, timeout=120, rank=1)
    message = str(info.value)
    assert message.startswith(
        "rank 1 of 2 failed in tests.distributed_workers:fail_on_rank: ValueError: rank 1 gave up, leaving process "
    )
    assert info.value.rank == 1
    assert "ValueError: rank 1 gave up" in info.value.log
    assert _gone(distributed.LAUNCHES[-1])  # rank 0 was blocked in all_reduce: stopped, not left waiting
    # The `sleep 600` that rank 1 started before it raised is ended with the rank's process group.
    started = int(re.search(r"leaving process (\d+) running", message).group(1))
    assert _ends(started), f"process {started}, started by the failed worker, still runs"


def test_a_hanging_worker_meets_the_deadline_and_is_killed():
    # 3 s: the deadline branch and the stop are the same for any timeout. The ranks may still be importing
    # torch when it passes; stopping a rank blocked inside its worker (rank 0 holding the rendezvous port)
    # is shown by the failing-worker test above.
    with pytest.raises(WorkerError, match=r"did not finish within 3 s \(ranks still running: \[0, 1\]\)"):
        run_processes(workers.sleep_forever, world_size=2, timeout=3)
    assert _gone(distributed.LAUNCHES[-1])


def test_a_notebook_function_is_refused_before_anything_starts():
    def local_worker():
        return 1

    before = len(distributed.LAUNCHES)
    with pytest.raises(TypeError, match="needs a function that a new Python process can import by name"):
        run_processes(local_worker, world_size=2)
    assert len(distributed.LAUNCHES) == before


@pytest.mark.parametrize("world_size", [0, 9, 2.0, True])
def test_bad_world_size_is_a_teaching_error(world_size):
    with pytest.raises(ValueError, match="world_size must be a whole number of processes from 1 to 8"):
        run_processes(workers.leave_the_group, world_size=world_size)


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), "10"])
def test_bad_timeout_is_a_teaching_error(timeout):
    with pytest.raises(ValueError, match="timeout must be a positive, finite number of seconds"):
        run_processes(workers.leave_the_group, world_size=2, timeout=timeout)


def test_leftovers_sees_a_live_process_and_a_listening_port():
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    port_owner = __import__("socket").socket()
    port_owner.bind(("127.0.0.1", 0))
    port_owner.listen()
    try:
        distributed.LAUNCHES.append(distributed.Launch("fake:worker", port_owner.getsockname()[1], (server.pid,)))
        found = leftovers()
        assert found == [f"process {server.pid} (fake:worker)", f"port {port_owner.getsockname()[1]} (fake:worker)"]
    finally:
        distributed.LAUNCHES.pop()
        server.kill()
        server.wait()
        port_owner.close()


def test_the_torchrun_command_of_the_notebook_runs():
    """Notebook 06 §1's one-machine command, as shown: torchrun sets the environment, normlab.distributed runs
    replica_step with its defaults (8 rows a rank) and each rank prints its result."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node=2",
            "-m",
            "normlab.distributed",
            "normlab.experiments.batch_norm_across_processes:replica_step",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for rank in (0, 1):
        assert f"rank {rank}: ReplicaResult(rank={rank}, world_size=2, batch_size=8, " in out.stdout


def test_torch_sync_batch_norm_refuses_cpu_under_a_process_group():
    """The fact notebook 06 §4 shows, in a process group of one (no network: a HashStore)."""
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(
            ValueError, match=r"^SyncBatchNorm expected input tensor to be on GPU or XPU or privateuseone$"
        ):
            torch.nn.SyncBatchNorm(3)(torch.randn(4, 3))
        with pytest.raises(
            NotImplementedError, match="Could not run 'aten::batch_norm_stats' with arguments from the 'CPU'"
        ):
            torch.batch_norm_stats(torch.randn(4, 3), 1e-5)
    finally:
        torch.distributed.destroy_process_group()


def test_a_worker_that_exits_is_named_and_one_that_leaves_the_group_keeps_its_result():
    with pytest.raises(WorkerError, match=r"^rank 0 of 1 exited with code 0 but returned no result from tests"):
        run_processes(workers.exit_early, world_size=1, timeout=120)
    assert run_processes(workers.leave_the_group, world_size=1, timeout=120) == [7]


def test_a_huge_error_message_is_shortened():
    with pytest.raises(WorkerError) as info:
        run_processes(workers.fail_at_length, world_size=1, timeout=120)
    assert len(str(info.value)) < 2300
    assert "more characters in WorkerError.log" in str(info.value)
    assert len(info.value.log) > 5_000_000


def test_a_partial_or_an_unpicklable_argument_is_refused_with_the_fix():
    before = len(distributed.LAUNCHES)
    with pytest.raises(TypeError, match=r"needs a plain function defined with def .* got functools.partial"):
        run_processes(functools.partial(workers.fail_on_rank, rank=0), world_size=2)
    with pytest.raises(TypeError, match=r"by pickle; lock=lock cannot be pickled \(TypeError: cannot pickle"):
        run_processes(workers.leave_the_group, world_size=2, lock=__import__("threading").Lock())
    assert len(distributed.LAUNCHES) == before
