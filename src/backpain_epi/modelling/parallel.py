"""Run independent fits serially, in local processes or on a Dask cluster, with one call: :func:`map_tasks`.

The pipeline's model fits and the refits of leave-one-site-out cross-validation
(:mod:`backpain_epi.modelling.crossval`) are independent tasks of a picklable
top-level function. :func:`map_tasks` runs them

- serially in this process (``workers=1``, no scheduler);
- in ``workers`` local processes started with the ``spawn`` method (PyTensor and
  numba hold threads and locks that a forked child would inherit half-made);
- on a Dask cluster when ``scheduler`` (``tcp://host:8786``) is given; the workers
  must see the same files (a shared file system) and have backpain-epi installed.

Results come back in the order of the tasks, whatever order they finish in, so the
three ways give the same result when each task seeds its own sampler (the fits do).

Cores: a fit samples its chains in parallel on ``min(chains, cores)`` cores. In
local processes each task gets ``cpu_count // workers`` cores (at least one), on
Dask the worker's thread count; the limit reaches the sampler through the
environment variable :data:`CORES_ENV`. The draws do
not depend on it (each chain has its own seeded stream).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm.auto import tqdm

from ..errors import BackpainEpiError

#: Environment variable capping the cores one fit's chains run on, read by :mod:`~backpain_epi.modelling.sample`;
#: set in the worker processes of :func:`map_tasks`, so that parallel fits do not oversubscribe the cores. Unset: every core.
CORES_ENV = "BACKPAIN_EPI_CORES"
#: Seconds to wait for a Dask scheduler to answer.
CONNECT_TIMEOUT_S = 20


class TaskFailedError(BackpainEpiError):
    """A task of :func:`map_tasks` raised; the message names the task, the original error is its ``__cause__``."""

    def __init__(self, message: str, *, label: str, param: str | None = None):
        super().__init__(message, param=param)
        self.label = label


def map_tasks(fn: Callable[[Any], Any], tasks: Sequence[Any], *, workers: int = 1, scheduler: str | None = None,
              desc: str = "tasks", labels: Sequence[str] | None = None, progress: bool = True) -> list:
    """``[fn(t) for t in tasks]``, serially, in ``workers`` local processes or on the Dask cluster at ``scheduler``.

    Parameters
    ----------
    fn
        A top-level (picklable) function of one task.
    tasks
        Picklable arguments, one per call.
    workers
        Local processes (1: in this process). Ignored with ``scheduler``.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``); the tasks run on its workers.
    desc
        Label of the progress bar and of error messages.
    labels
        A name per task for error messages (default ``task 1``, ``task 2``, ...).
    progress
        Show a progress bar over the tasks.

    Returns
    -------
    list
        The results, in the order of ``tasks``.

    Raises
    ------
    BackpainEpiError
        ``workers`` below 1, or the scheduler cannot be reached within 20 s.
    TaskFailedError
        A task raised: the message names the task and the error (the first to fail; the tasks not yet started are cancelled).
    """
    tasks = list(tasks)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise BackpainEpiError(f"{workers!r}: must be a whole number of at least 1.", param="workers")
    labels = list(labels) if labels is not None else [f"task {i + 1}" for i in range(len(tasks))]
    if len(labels) != len(tasks):
        raise BackpainEpiError(f": {len(labels)} labels for {len(tasks)} tasks.", param="labels")
    if not tasks:
        return []
    with tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress) as bar:
        if scheduler:
            return _on_dask(fn, tasks, labels, scheduler, desc, bar)
        if workers == 1 or len(tasks) == 1:
            return _serial(fn, tasks, labels, desc, bar)
        return _in_processes(fn, tasks, labels, min(workers, len(tasks)), desc, bar)


def _serial(fn, tasks, labels, desc, bar) -> list:
    results = []
    for task, label in zip(tasks, labels):
        try:
            results.append(fn(task))
        except Exception as exc:  # noqa: BLE001 - re-raised with the task's name
            raise _failed(desc, label, exc) from exc
        bar.update()
    return results


def _in_processes(fn, tasks, labels, workers, desc, bar) -> list:
    cores = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(run_with_cores, fn, task, cores): i for i, task in enumerate(tasks)}
        pending, results = set(futures), [None] * len(tasks)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                i = futures[future]
                exc = future.exception()
                if exc is not None:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise _failed(desc, labels[i], exc) from exc
                results[i] = future.result()
                bar.update()
    return results


def _on_dask(fn, tasks, labels, scheduler, desc, bar) -> list:
    # lazy: distributed is an optional extra and takes 0.7 s to import; only a run on Dask needs it
    from distributed import Client, as_completed

    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise BackpainEpiError(f"{scheduler}: cannot connect to a Dask scheduler within {CONNECT_TIMEOUT_S} s ({exc}); "
                               "start one (`dask scheduler`, then `dask worker <address>`) or run without a scheduler (local processes).",
                               param="scheduler") from None
    try:
        stamp = time.time_ns()
        futures = [client.submit(run_on_dask_worker, fn, task, key=f"{desc}-{i}-{stamp}", pure=False) for i, task in enumerate(tasks)]
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            if future.status == "error":
                i = index[future.key]
                exc = future.exception()
                client.cancel(futures)
                raise _failed(desc, labels[i], exc) from exc
            bar.update()
        return [f.result() for f in futures]
    finally:
        client.close()


def run_with_cores(fn, task, cores: int):
    """``fn(task)`` with the sampler limited to ``cores`` cores (in a worker process)."""
    os.environ[CORES_ENV] = str(cores)
    return fn(task)


def run_on_dask_worker(fn, task):
    """``fn(task)`` on a Dask worker, the sampler limited to the worker's threads."""
    try:
        # lazy: only a Dask worker runs this
        from distributed import get_worker

        cores = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        cores = os.cpu_count() or 1
    return run_with_cores(fn, task, cores)


def _failed(desc: str, label: str, exc: BaseException) -> TaskFailedError:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, BrokenProcessPool):
        detail += (" A worker process died: out of memory (use fewer workers), or a script started processes without "
                   "`if __name__ == \"__main__\":` around its code (needed by the spawn start method).")
    return TaskFailedError(f"{desc}: {label} failed: {type(exc).__name__}: {detail}", label=label)
