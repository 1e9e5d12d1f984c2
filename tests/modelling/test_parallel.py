"""map_tasks: the same results, in task order, serially, in spawned processes and on Dask; errors name the task."""

from __future__ import annotations

import os

import pytest

from backpain_epi.errors import BackpainEpiError
from backpain_epi.modelling import parallel
from backpain_epi.modelling.parallel import CORES_ENV, TaskFailedError, map_tasks


def square_after(task):
    """Top-level (picklable) task: sleep a little, later tasks less, so they finish out of order."""
    import time

    value, delay = task
    time.sleep(delay)
    if value < 0:
        raise ValueError(f"negative value {value}")
    return value * value, os.environ.get(CORES_ENV)


TASKS = [(1, 0.3), (2, 0.0), (3, 0.1), (4, 0.0)]


def test_serial_results_in_task_order_without_a_core_limit(monkeypatch):
    monkeypatch.delenv(CORES_ENV, raising=False)
    assert map_tasks(square_after, TASKS, progress=False) == [(1, None), (4, None), (9, None), (16, None)]
    assert map_tasks(square_after, [], progress=False) == []


def test_processes_give_the_serial_results_in_task_order_and_split_the_cores():
    results = map_tasks(square_after, TASKS, workers=2, progress=False)
    assert [r[0] for r in results] == [1, 4, 9, 16]
    assert {r[1] for r in results} == {str(max(1, (os.cpu_count() or 1) // 2))}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_task_is_named(workers):
    with pytest.raises(TaskFailedError, match=r"squares: b failed: ValueError: negative value -2") as info:
        map_tasks(square_after, [(1, 0.0), (-2, 0.0)], workers=workers, desc="squares", labels=["a", "b"], progress=False)
    assert info.value.label == "b" and isinstance(info.value.__cause__, ValueError)


def test_bad_settings_are_refused():
    with pytest.raises(BackpainEpiError, match="workers 0: must be a whole number of at least 1"):
        map_tasks(square_after, TASKS, workers=0, progress=False)
    with pytest.raises(BackpainEpiError, match="labels: 1 labels for 4 tasks"):
        map_tasks(square_after, TASKS, labels=["x"], progress=False)


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(BackpainEpiError, match=r"scheduler tcp://127.0.0.1:9: cannot connect to a Dask scheduler within 1 s") as info:
        map_tasks(square_after, TASKS, scheduler="tcp://127.0.0.1:9", progress=False)
    assert info.value.param == "scheduler"


def test_dask_gives_the_serial_results_and_names_a_failing_task():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        results = map_tasks(square_after, TASKS, scheduler=cluster.scheduler_address, progress=False)
        assert [r[0] for r in results] == [1, 4, 9, 16] and {r[1] for r in results} == {"2"}
        with pytest.raises(TaskFailedError, match="on dask: task 2 failed: ValueError"):
            map_tasks(square_after, [(1, 0.0), (-1, 0.0)], scheduler=cluster.scheduler_address, desc="on dask", progress=False)
