"""The Ray engine: a batch's studies scheduled to Ray actors, each of which loads the bundle's models once.

Why Ray and not a home-made process pool: the same code runs on this machine (an embedded local cluster,
started and stopped here), on a running cluster of many nodes (``address="auto"`` on a cluster node, or
``ray://HOST:10001`` through Ray Client), with GPUs shared between workers by fractions (``gpus_per_worker``),
and Ray notices a worker process that dies.

Division of labour (the same files as the local engine, written the same way):

* the **driver** (the ``spineseg predict`` process) discovers the studies, skips finished ones (resume),
  hands the others to the workers, and writes ``submission.csv`` and ``errors.csv``
  (:func:`spine_seg.inference.batch.predict_batch`);
* each **worker** (:class:`StudyWorker`, one Ray actor) runs :func:`spine_seg.inference.batch.run_study`: predict,
  then write the study's own files atomically into ``OUT/<study>/`` (``result.json`` last), and sends back
  only the outcome and the 25 rows. Workers therefore need INPUT, OUT and the bundle at the same paths as
  the driver: on one machine that is given; on a multi-node cluster use a shared file system (docs/predict.md).

A worker process that dies (killed, out of memory, a crashing native library) costs only the study it was
predicting: the actor is replaced, the study is tried once more, and if the worker dies again the study is
reported in ``errors.csv`` (stage ``worker``) with the training prior's rows, as any failed study.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from spine_seg.core.errors import UsageError
from spine_seg.inference.batch import BatchJob, StudyRun, StudyTask, failed_run, fallback_rows, run_study
from spine_seg.inference.engines import MissingDependencyError, WorkerStartError
from spine_seg.inference.predictor import Predictor

log = logging.getLogger(__name__)

#: The command that installs what ``--engine ray`` needs.
RAY_INSTALL_COMMAND = "pip install 'spineseg[distributed]'"
#: Test hook: a worker asked to predict a study named here exits at once (``os._exit``), as a killed process
#: would. ``NAME`` dies on every attempt, ``NAME:once`` only on the first; several names comma-separated.
KILL_ENV = "SPINESEG_TEST_KILL_STUDY"
#: Stage recorded in errors.csv for a study whose worker died on every attempt.
WORKER_STAGE = "worker"


def require_ray() -> Any:
    """The ``ray`` module, or :class:`MissingDependencyError` naming the command that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            f"--engine ray needs Ray, which is not installed here; install it with: {RAY_INSTALL_COMMAND}"
        ) from exc
    return ray


def _kill_rules(text: str | None) -> dict[str, bool]:
    """``KILL_ENV``'s value → {study: die on every attempt?}."""
    rules: dict[str, bool] = {}
    for item in (text or "").split(","):
        name, _, mode = item.strip().partition(":")
        if name:
            rules[name] = mode != "once"
    return rules


class StudyWorker:
    """The body of one Ray actor: a :class:`~spine_seg.inference.predictor.Predictor` loaded once, then one study
    per call.

    A plain class (made remote at run time), so that importing this module needs no Ray.
    """

    def __init__(self, job: BatchJob, threads: int = 1, kill: dict[str, bool] | None = None) -> None:
        import torch

        torch.set_num_threads(max(1, threads))  # Ray sets OMP_NUM_THREADS from num_cpus; torch needs telling too
        self.job = job
        self.kill = dict(kill or {})
        self.predictor = Predictor(job.bundle, job.device, cross_check=job.cross_check, mirroring=job.mirroring)

    def info(self) -> dict[str, Any]:
        """Proof of life after loading: how long the models took, where the worker runs."""
        import platform

        return {
            "load_seconds": self.predictor.load_seconds,
            "pid": os.getpid(),
            "host": platform.node(),
            "device": self.predictor.seg_model.device,
        }

    def process(self, task: StudyTask, attempt: int = 0) -> StudyRun:
        name = task.folder.name
        if name in self.kill and (self.kill[name] or attempt == 0):
            os._exit(17)  # the test hook: die as a killed process does, without cleanup
        return run_study(
            self.predictor,
            task,
            self.job.series_csv,
            report=self.job.report,
            run=self.job.run,
            extra_outputs=self.job.extra_outputs,
        )

    def prior_rows(self, study: str):
        return self.predictor.prior_rows(study)


class RayEngine:
    """Run a batch on Ray. ``address``: None starts an embedded cluster on this machine (stopped afterwards),
    ``"auto"`` joins the cluster this node belongs to, ``"ray://HOST:PORT"`` connects through Ray Client.
    A Ray session already initialised in this process (``ray.init`` by the caller) is used as it is.

    ``workers``: actors (default: as many as the cluster's CPUs allow at ``cpus_per_worker`` each, fewer when
    GPUs are the limit, never more than the studies). ``gpus_per_worker``: GPU share per actor (default 1
    when the cluster has GPUs and the device is not ``cpu``, else 0; 0.5 puts two workers on one GPU).
    ``retries``: further attempts for a study whose worker died.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1.0,
        retries: int = 1,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"--workers: must be at least 1, got {workers}")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker: must be 0 or more, got {gpus_per_worker}")
        if cpus_per_worker <= 0:
            raise UsageError(f"cpus_per_worker must be positive, got {cpus_per_worker}")
        if address is not None and address != "auto" and not address.startswith("ray://"):
            raise UsageError(f"--address: expected 'auto' or 'ray://HOST:PORT', got {address!r}")
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.retries = retries
        self.init_kwargs = dict(init_kwargs or {})
        self.load_seconds = 0.0
        self.startup_seconds = 0.0  # from run() until every worker has its models (cluster start included)
        self.worker_info: list[dict[str, Any]] = []
        self.restarts = 0

    # -----------------------------------------------------------------------------------------------------

    def run(
        self, tasks: Sequence[StudyTask], job: BatchJob, progress: Callable[[int, str, str], None]
    ) -> Iterator[StudyRun]:
        ray = require_ray()
        self._t0 = time.perf_counter()
        started_here = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            if self.address is not None:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            started_here = True
        try:
            # Ray's driver prints worker-death notices on stdout; stdout belongs to `predict --json`
            with contextlib.redirect_stdout(sys.stderr):
                yield from self._schedule(ray, list(tasks), job, progress)
        finally:
            if started_here:
                ray.shutdown()

    def _plan(self, ray: Any, n_tasks: int, job: BatchJob) -> tuple[int, float, float]:
        """(workers, GPUs per worker, CPUs per worker) for this cluster. More workers than an embedded cluster
        has CPUs share them (fractional CPUs), instead of waiting forever for CPUs that will never come; a
        running cluster may be autoscaled, so there the request stands."""
        resources = ray.cluster_resources()
        cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
        gpw = self.gpus_per_worker
        if gpw is None:
            gpw = 1.0 if gpus >= 1 and job.device != "cpu" else 0.0
        if job.device == "cuda" and gpw == 0:
            raise UsageError("--device cuda with --engine ray: give the workers GPUs (--gpus-per-worker 1, or 0.5 …)")
        if gpw > gpus:
            raise UsageError(f"--gpus-per-worker {gpw}: the Ray cluster has {gpus:g} GPUs")
        if self.workers is not None:
            n = self.workers
        else:
            n = max(1, int(cpus // self.cpus_per_worker))
            if gpw > 0:
                n = min(n, max(1, int(gpus // gpw)))
        n = max(1, min(n, n_tasks))
        cpw = self.cpus_per_worker
        if self.address is None and n * cpw > cpus:
            cpw = cpus / n
        return n, gpw, cpw

    def _schedule(
        self, ray: Any, tasks: list[StudyTask], job: BatchJob, progress: Callable[[int, str, str], None]
    ) -> Iterator[StudyRun]:
        if not tasks:
            return
        n_workers, gpw, cpw = self._plan(ray, len(tasks), job)
        remote_cls = ray.remote(StudyWorker).options(num_cpus=cpw, num_gpus=gpw, max_restarts=0, max_task_retries=0)
        kill = _kill_rules(os.environ.get(KILL_ENV))
        threads = max(1, int(self.cpus_per_worker))

        def new_actor() -> Any:
            return remote_cls.remote(job, threads, kill)

        actors = [new_actor() for _ in range(n_workers)]
        try:
            # Wait for every worker to load its models: a bundle the workers cannot read is the batch's problem
            # (exit 2), not every study's.
            try:
                self.worker_info = ray.get([a.info.remote() for a in actors])
            except ray.exceptions.RayError as exc:
                raise WorkerStartError(f"Ray workers could not load the models: {_first_line(exc)}") from exc
            self.load_seconds = max(w["load_seconds"] for w in self.worker_info)
            self.startup_seconds = time.perf_counter() - self._t0
            log.info(
                "ray: %d workers ready (%s)", n_workers, ", ".join(f"{w['host']}:{w['pid']}" for w in self.worker_info)
            )
            yield from self._loop(ray, tasks, actors, new_actor, progress)
        finally:
            for a in actors:
                ray.kill(a)

    def _loop(
        self,
        ray: Any,
        tasks: list[StudyTask],
        actors: list[Any],
        new_actor: Callable[[], Any],
        progress: Callable[[int, str, str], None],
    ) -> Iterator[StudyRun]:
        queue: deque[tuple[StudyTask, int]] = deque((t, 0) for t in tasks)
        idle = list(range(len(actors)))[::-1]
        inflight: dict[Any, tuple[int, StudyTask, int]] = {}
        while queue or inflight:
            while queue and idle:
                a = idle.pop()
                task, attempt = queue.popleft()
                inflight[actors[a].process.remote(task, attempt)] = (a, task, attempt)
                progress(task.index, task.folder.name, "running" if attempt == 0 else "retry")
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            a, task, attempt = inflight.pop(ref)
            try:
                run = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # the worker process died: replace it, retry the study once
                self.restarts += 1
                ray.kill(actors[a])
                actors[a] = new_actor()
                idle.append(a)
                reason = _first_line(exc)
                if attempt < self.retries:
                    log.warning("%s: its Ray worker died (%s); trying once more", task.folder.name, reason)
                    queue.appendleft((task, attempt + 1))
                    continue
                other = actors[(a + 1) % len(actors)]  # a worker with its models loaded, when there is one
                yield self._failed(
                    ray, task, other, f"the Ray worker predicting it died {attempt + 1} times (last: {reason})"
                )
                continue
            except ray.exceptions.RayTaskError as exc:  # an unexpected exception in the worker: only this study
                idle.append(a)
                yield self._failed(ray, task, actors[a], f"unexpected error in the worker: {_first_line(exc)}")
                continue
            idle.append(a)
            yield run

    def _failed(self, ray: Any, task: StudyTask, actor: Any, reason: str) -> StudyRun:
        """A failed study's run (:func:`~spine_seg.inference.batch.failed_run`): its errors.csv row and the training
        prior's rows, asked of a live worker (uniform thirds if even that fails, as for any failed study)."""
        return failed_run(task, WORKER_STAGE, reason, *fallback_rows(_RemotePrior(ray, actor), task.folder.name))


class _RemotePrior:
    """A worker's :meth:`~spine_seg.inference.predictor.Predictor.prior_rows`, called from the driver."""

    def __init__(self, ray: Any, actor: Any) -> None:
        self.ray, self.actor = ray, actor

    def prior_rows(self, study: str):
        return self.ray.get(self.actor.prior_rows.remote(study))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["KILL_ENV", "RAY_INSTALL_COMMAND", "WORKER_STAGE", "RayEngine", "StudyWorker", "require_ray"]
