"""The local engine behind the engine interface gives what predict_batch's own loop gives."""

from __future__ import annotations

import pandas as pd
import pytest

from spine_seg.inference.batch import predict_batch
from spine_seg.inference.engines.local import LocalEngine
from spine_seg.inference.predictor import Predictor

pytestmark = pytest.mark.slow


def test_local_engine_equals_the_default_loop(tiny_bundle, tmp_path):
    src, csv = tiny_bundle.cohort / "test_images", tiny_bundle.cohort / "test_series_descriptions.csv"
    pred = Predictor(tiny_bundle.bundle, device="cpu")
    a = predict_batch(src, None, tmp_path / "a", series_csv=csv, predictor=pred, report=False)
    b = predict_batch(src, None, tmp_path / "b", series_csv=csv, report=False, engine=LocalEngine(pred))
    assert [o.study for o in a.outcomes] == [o.study for o in b.outcomes] and not b.failed
    pd.testing.assert_frame_equal(pd.read_csv(a.submission), pd.read_csv(b.submission))
    assert b.load_seconds == pred.load_seconds
