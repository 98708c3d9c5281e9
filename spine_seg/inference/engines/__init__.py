"""Where a batch's studies run: ``local`` (this process, one study after the other) or ``ray`` (actors on a Ray
cluster, each holding the models once). Both plug into :func:`spine_seg.inference.batch.predict_batch`, which keeps
discovery, resume, ``submission.csv`` and ``errors.csv`` in one place, so the engines cannot drift apart in
what they write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spine_seg.core.choices import Engine, check_option, values
from spine_seg.core.errors import MissingDependencyError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from spine_seg.inference.batch import BatchEngine

#: The ``--engine`` choices.
ENGINES: tuple[str, ...] = values(Engine)


class WorkerStartError(RuntimeError):
    """The workers of a distributed engine could not start (e.g. the bundle is not readable on their node)."""


def make_engine(
    name: str, *, address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None
) -> BatchEngine | None:
    """The engine called ``name``; ``None`` for ``local`` (``predict_batch``'s own loop, which also takes a
    preloaded :class:`~spine_seg.inference.predictor.Predictor`). Ray options given to the local engine are refused, so
    that a forgotten ``--engine ray`` does not silently run on one core."""
    check_option("--engine", name, ENGINES)
    if name == "local":
        given = [
            flag
            for flag, v in (("--address", address), ("--workers", workers), ("--gpus-per-worker", gpus_per_worker))
            if v is not None
        ]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --engine ray")
        return None
    from spine_seg.inference.engines.ray_engine import RayEngine

    return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker)


__all__ = ["ENGINES", "MissingDependencyError", "WorkerStartError", "make_engine"]
