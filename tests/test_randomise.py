"""Domain-randomised phantom cases (spine_seg.synthetic.randomise)."""

from __future__ import annotations

import numpy as np

from spine_seg.core.labels import BASE_LABELS, SPIDER_CANAL, SYNTHETIC_SACRUM
from spine_seg.synthetic.randomise import base_labels_from_spider, randomised_case


def test_same_seed_same_case_other_seed_other_look():
    a, b, c = randomised_case(3), randomised_case(3), randomised_case(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.meta == b.meta
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


def test_cases_hold_every_structure_within_their_field_of_view():
    seen_contrasts, thickness = set(), []
    for seed in range(6):
        case = randomised_case(seed)
        counts = np.bincount(case.labels.ravel(), minlength=len(BASE_LABELS))
        assert counts[BASE_LABELS["vertebra"]] > 0 and counts[BASE_LABELS["disc"]] > 0
        assert counts[BASE_LABELS["spinal_canal"]] > 0
        assert case.labels.max() < len(BASE_LABELS)
        assert case.image.dtype == np.float32 and np.isfinite(case.image).all()
        assert 0 <= case.image.min() and case.image.max() < 3000
        si, sj, sk = case.spacing_mm
        assert 0.85 <= si <= 1.4 and abs(si - sj) < 1e-6 and 3.0 <= sk <= 7.0
        seen_contrasts.add(case.meta["contrast"])
        thickness.append(case.meta["thickness_mm"])
        # vertebral bodies and discs alternate along the rows: discs lie between bodies
        rows_disc = np.nonzero((case.labels == BASE_LABELS["disc"]).any(axis=(0, 2)))[0]
        rows_body = np.nonzero((case.labels == BASE_LABELS["vertebra"]).any(axis=(0, 2)))[0]
        assert rows_body.min() < rows_disc.mean() < rows_body.max()
    assert len(seen_contrasts) >= 2  # random and realistic draws both occur in six seeds
    assert max(thickness) - min(thickness) > 0.5


def test_intensity_order_is_not_fixed():
    """The point of domain randomisation: disc brighter than bone in some cases, darker in others."""
    brighter = []
    for seed in range(8):
        case = randomised_case(seed)
        disc = case.image[case.labels == BASE_LABELS["disc"]].mean()
        body = case.image[case.labels == BASE_LABELS["vertebra"]].mean()
        brighter.append(disc > body)
    assert any(brighter) and not all(brighter)


def test_base_labels_from_spider_values():
    spider = np.array([0, 1, 5, 7, 105, SYNTHETIC_SACRUM, SPIDER_CANAL, 201, 207], dtype=np.uint16)
    base = base_labels_from_spider(spider)
    v, s, d, c = (BASE_LABELS[k] for k in ("vertebra", "sacrum", "disc", "spinal_canal"))
    assert base.tolist() == [0, v, v, v, v, s, c, d, d]
