"""Structure labels → level names by counting (spine_seg.landmarks.structures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spine_seg.core.constants import LEVELS
from spine_seg.core.labels import BASE_LABELS, SEG_LABELS
from spine_seg.landmarks import landmarks_from_labels, load_label_volume
from spine_seg.landmarks.structures import landmarks_from_label_volume, seg_labels_from_base
from spine_seg.segmentation.predict import LabelVolume
from spine_seg.synthetic import CohortConfig, generate_cohort
from spine_seg.synthetic.randomise import base_labels_from_spider


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("structures") / "cohort"
    generate_cohort(root, CohortConfig(n_studies=3, seed=31, test_fraction=0.0))
    return root


def _cases(root: Path):
    overview = pd.read_csv(root / "spider" / "overview.csv", dtype=str)
    for row in overview[overview.new_file_name.str.endswith("_t2")].itertuples():
        spider, affine = load_label_volume(root / "spider" / "masks" / f"{row.new_file_name}.mha")
        truth = json.loads((root / "truth" / f"{row.synthetic_study_id}.json").read_text())
        yield spider, affine, truth


def _base(spider: np.ndarray) -> np.ndarray:
    return base_labels_from_spider(spider.astype(np.int64))


def test_counting_names_every_level_like_the_level_labels(cohort: Path):
    n = 0
    for spider, affine, truth in _cases(cohort):
        base = _base(spider)
        ls = landmarks_from_label_volume(LabelVolume(base, affine, {v: k for k, v in BASE_LABELS.items()}))
        assert ls.anchor == "sacrum" and not ls.unsure
        assert ls.found_levels == LEVELS
        for lm in ls.levels:
            err = float(np.linalg.norm(lm.disc_xyz - np.asarray(truth["landmarks_lps_mm"][lm.level]["disc_centre"])))
            assert err < 3.0, (lm.level, err)
            assert lm.confidence >= 0.8
        n += 1
    assert n == 3


def test_without_sacrum_names_are_unsure(cohort: Path):
    spider, affine, _ = next(_cases(cohort))
    base = _base(spider)
    base[base == BASE_LABELS["sacrum"]] = 0
    ls = landmarks_from_labels(seg_labels_from_base(base, affine), affine)
    assert ls.unsure
    assert all(lm.confidence < 0.8 for lm in ls.levels)


def test_extra_thoracic_disc_is_not_named_lumbar(cohort: Path):
    """A disc above L1/L2 (T12/L1 in view) must not push the names up: counting starts at the sacrum."""
    spider, affine, truth = next(_cases(cohort))
    base = _base(spider)
    relabelled = seg_labels_from_base(base, affine)
    values = set(np.unique(relabelled).tolist())
    assert values <= set(SEG_LABELS.values())
    assert {SEG_LABELS[f"disc_{lv}"] for lv in LEVELS} <= values
