"""The local engine: the batch's studies one after the other in this process, with the models loaded once.

:func:`spine_seg.inference.batch.predict_batch` runs this loop itself when no engine is given (it can reuse a
preloaded :class:`~spine_seg.inference.predictor.Predictor`); :class:`LocalEngine` is the same loop behind the
:class:`~spine_seg.inference.batch.BatchEngine` interface, for code that picks an engine by value (benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from spine_seg.inference.batch import BatchJob, StudyRun, StudyTask, run_study
from spine_seg.inference.predictor import Predictor


class LocalEngine:
    """Predict in this process; the models load on the first :meth:`run` (or come with ``predictor``)."""

    def __init__(self, predictor: Predictor | None = None) -> None:
        self.predictor = predictor
        self.load_seconds = predictor.load_seconds if predictor is not None else 0.0

    def run(
        self, tasks: Sequence[StudyTask], job: BatchJob, progress: Callable[[int, str, str], None]
    ) -> Iterator[StudyRun]:
        if self.predictor is None:
            self.predictor = Predictor(job.bundle, job.device, cross_check=job.cross_check, mirroring=job.mirroring)
            self.load_seconds = self.predictor.load_seconds
        for task in tasks:
            yield run_study(
                self.predictor,
                task,
                job.series_csv,
                report=job.report,
                run=job.run,
                extra_outputs=job.extra_outputs,
                progress=progress,
            )


__all__ = ["LocalEngine"]
