"""DICOM outputs of a prediction, for PACS viewers: a Segmentation (SEG) of the label volume and a
Comprehensive 3D SR of the landmarks and graded findings (:mod:`.seg`, :mod:`.sr`; codes in :mod:`.codes`;
the competition's DICOM quirks in :mod:`.sources`).

:func:`write_dicom_outputs` is the per-study hook ``predict`` runs (``--dicom-out``, on by default for DICOM
input): ``<study>/dicom/seg.dcm`` and ``<study>/dicom/sr.dcm``, each with new UIDs and the source's patient and
study attributes, written atomically before ``result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spine_seg.core.atomic import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from spine_seg.dicom import Study
    from spine_seg.report.result import StudyResult

DICOM_DIR = "dicom"
SEG_FILE = "seg.dcm"
SR_FILE = "sr.dcm"
#: The command that installs highdicom (a core dependency; named where it is missing anyway).
HIGHDICOM_INSTALL_COMMAND = "pip install highdicom"


def _require_highdicom() -> None:
    try:
        import highdicom  # noqa: F401
    except ImportError as exc:
        from spine_seg.core.errors import MissingDependencyError

        raise MissingDependencyError(
            f"DICOM outputs need highdicom: {HIGHDICOM_INSTALL_COMMAND} (or predict with --no-dicom-out)"
        ) from exc


def write_dicom_outputs(result: StudyResult, study_dir: Path, study: Study | None = None) -> dict[str, Path]:
    """Write the SEG (when the study was segmented) and the SR into ``study_dir/dicom/``; returns
    {"dicom_seg": path, "dicom_sr": path} for what was written. Nothing when the study has no image series
    to reference (then there is no DICOM to attach a result to)."""
    _require_highdicom()
    from spine_seg.core.versions import __version__
    from spine_seg.dicom import load_study
    from spine_seg.dicom_out.seg import build_seg
    from spine_seg.dicom_out.sources import read_sources
    from spine_seg.dicom_out.sr import build_sr

    if study is None:
        study = load_study(result.folder)
    bundle_name = str(result.bundle.get("name", "unknown"))
    seg_info = result.segmentation_stack
    if seg_info is not None:
        stack = study.get_series(seg_info["series_id"]).stacks[int(seg_info["stack"])]
    else:  # no Sagittal T2: the SR's evidence is the series with most slices
        series = max(study.series, key=lambda s: (s.n_slices, s.series_id), default=None)
        if series is None:
            return {}
        stack = max(series.stacks, key=lambda st: (st.n_slices, -st.index))
    sources = read_sources(s.path for s in stack.slices)
    written: dict[str, Path] = {}
    out = Path(study_dir) / DICOM_DIR
    seg = None
    if result.segmentation is not None:
        seg = build_seg(
            result.segmentation.labels,
            result.segmentation.label_names,
            sources,
            version=__version__,
            bundle_name=bundle_name,
        )
        written["dicom_seg"] = atomic_write(out / SEG_FILE, lambda p: seg.save_as(p, enforce_file_format=True))
    crop_images = _crop_images(result, study, {sl.path: ds for sl, ds in zip(stack.slices, sources, strict=True)})
    sr = build_sr(result, sources, seg, version=__version__, bundle_name=bundle_name, crop_images=crop_images)
    written["dicom_sr"] = atomic_write(out / SR_FILE, lambda p: sr.save_as(p, enforce_file_format=True))
    return written


def _crop_images(result: StudyResult, study: Study, known: dict) -> dict:
    """row_id → completed header of the image each model row's crop was cut from (``known``: path → header
    already read, the segmented stack's, so that an image is one dataset however often it is cited)."""
    from spine_seg.dicom_out.sources import read_sources

    paths: dict[str, Path] = {}
    for rid, crop in result.crops.items():
        try:
            st = study.get_series(crop.series_id).stacks[crop.stack]
        except (KeyError, IndexError):
            continue
        k = st.slice_of_instance(crop.instance_number)
        if k is not None:
            paths[rid] = st.slices[k].path
    todo = sorted(set(paths.values()) - set(known))
    headers = {**known, **dict(zip(todo, read_sources(todo), strict=True))}
    return {rid: headers[p] for rid, p in paths.items()}


__all__ = ["DICOM_DIR", "SEG_FILE", "SR_FILE", "write_dicom_outputs"]
