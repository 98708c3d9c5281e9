"""``spineseg prepare --source NAME``: the converters by name, with one signature.

Every entry is ``convert(input_dir: Path, raw_root: Path, dataset_id: int | None, **options) -> Path`` and
returns the nnU-Net raw dataset folder it wrote; ``dataset_id=None`` means the default in
:data:`DEFAULT_IDS`. Options are passed through to the converter (``overwrite=True``, ``workers=4``, …).

| source            | input_dir                                   | dataset                              |
|-------------------|---------------------------------------------|--------------------------------------|
| spider            | SPIDER folder: images/, masks/, overview.csv | Dataset501_SPIDER                    |
| rsna              | competition folder (train_images/, CSVs)    | Dataset502_RSNASpinalKeypoints       |
| rsna-foraminal    | competition folder (train_images/, CSVs)    | Dataset504_RSNAForaminalKeypoints    |
| myosegmentum      | folder of NN.mat files                       | Dataset503_MyoSegmenTUM              |
| synthetic         | a synthetic cohort (its spider/ subfolder)   | Dataset505_SyntheticSPIDER           |

The synthetic cohort gets its own id (505) so converting it never overwrites a real SPIDER dataset (501).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from spine_seg.core.errors import UsageError

from .Dataset501_SPIDER import convert_spider
from .Dataset502_RSNAKeypoints import convert_rsna_keypoints
from .Dataset503_MyoSegmenTUM import convert_myosegmentum


class Converter(Protocol):
    def __call__(self, input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path: ...


DEFAULT_IDS: dict[str, int] = {
    "spider": 501,
    "rsna": 502,
    "myosegmentum": 503,
    "rsna-foraminal": 504,
    "synthetic": 505,
}


def _spider(input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path:
    return convert_spider(input_dir, raw_root, DEFAULT_IDS["spider"] if dataset_id is None else dataset_id, **options)


def _rsna(input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path:
    return convert_rsna_keypoints(
        input_dir, raw_root, DEFAULT_IDS["rsna"] if dataset_id is None else dataset_id, task="spinal", **options
    )


def _rsna_foraminal(input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path:
    return convert_rsna_keypoints(
        input_dir,
        raw_root,
        DEFAULT_IDS["rsna-foraminal"] if dataset_id is None else dataset_id,
        task="foraminal",
        **options,
    )


def _myosegmentum(input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path:
    return convert_myosegmentum(
        input_dir, raw_root, DEFAULT_IDS["myosegmentum"] if dataset_id is None else dataset_id, **options
    )


def _synthetic(input_dir: Path, raw_root: Path, dataset_id: int | None = None, **options: Any) -> Path:
    input_dir = Path(input_dir)
    spider = input_dir / "spider"
    if not spider.is_dir():
        raise FileNotFoundError(
            f"{input_dir}: no spider/ folder; generate the cohort with spider=True (spineseg's synthetic generator)"
        )
    options.setdefault("dataset_name", "SyntheticSPIDER")
    options.setdefault("case_prefix", "synthetic")
    return convert_spider(spider, raw_root, DEFAULT_IDS["synthetic"] if dataset_id is None else dataset_id, **options)


CONVERTERS: dict[str, Callable[..., Path]] = {
    "spider": _spider,
    "rsna": _rsna,
    "rsna-foraminal": _rsna_foraminal,
    "myosegmentum": _myosegmentum,
    "synthetic": _synthetic,
}


def get_converter(source: str) -> Callable[..., Path]:
    """The converter of a ``--source`` name; an unknown name is a ValueError listing the valid ones."""
    try:
        return CONVERTERS[source]
    except KeyError:
        raise UsageError(f"unknown dataset source {source!r}; valid: {sorted(CONVERTERS)}") from None


def convert(
    source: str, input_dir: str | Path, raw_root: str | Path, dataset_id: int | None = None, **options: Any
) -> Path:
    """Run the converter of ``source``; returns the dataset folder."""
    return get_converter(source)(Path(input_dir), Path(raw_root), dataset_id, **options)
