"""spine_seg.workflows: the one train → grading recipe (shared by the demo, train-cls and the tests' tiny
bundle) and the demo's own checks, without running the minutes-long demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_seg.core.constants import LEVELS
from spine_seg.workflows.demo import DemoConfig, landmark_errors


def test_the_tiny_bundle_is_made_by_the_recipe(tiny_bundle):
    """conftest's tiny bundle runs workflows.recipe.train_grading: its run folder holds what the recipe
    promises (folds, ensemble.json naming them, the axial fallback) and the bundle carries both."""
    run = tiny_bundle.root / "grading" / "tiny"
    ensemble = json.loads((run / "ensemble.json").read_text())
    assert ensemble["members"] and all(Path(m["path"]).name.endswith(".pt") for m in ensemble["members"])
    assert (run / "axial_fallback.pt").is_file() and (run / "oof.csv").is_file()
    assert not (run / "temperature.json").exists()  # temperatures="none" is the recipe's default
    manifest = json.loads((tiny_bundle.bundle / "manifest.json").read_text())
    assert manifest["fallback"] and manifest["grading"]["members"] == len(ensemble["members"])


def test_recipe_is_the_only_trainer_of_grading_runs():
    """The demo, train-cls and conftest call the recipe instead of chaining the grading steps themselves."""
    root = Path(__file__).resolve().parents[1]
    for path in (root / "spine_seg/workflows/demo.py", root / "cli/grading.py", root / "tests/conftest.py"):
        src = path.read_text(encoding="utf-8")
        assert "train_grading(" in src and "train_cv(" not in src and "train_fallback(" not in src, path


def test_demo_config_refuses_impossible_settings():
    with pytest.raises(ValueError, match="at least 6 studies"):
        DemoConfig(studies=5)
    with pytest.raises(ValueError, match="test studies"):
        DemoConfig(studies=6, test_studies=3)


def test_landmark_errors_against_the_truth(tmp_path: Path):
    preds, truth = tmp_path / "pred", tmp_path / "truth"
    (preds / "s1").mkdir(parents=True)
    truth.mkdir()
    true = {lv: {"disc_centre": [0.0, 0.0, -40.0 * i]} for i, lv in enumerate(LEVELS)}
    (truth / "s1.json").write_text(json.dumps({"landmarks_lps_mm": true}))
    found = [{"level": lv, "disc_xyz_lps_mm": [0.0, 3.0, -40.0 * i]} for i, lv in enumerate(LEVELS[:4])]
    found[3]["level"] = LEVELS[0]  # a level named wrongly: nearest to l4_l5's truth, called l1_l2
    (preds / "s1" / "result.json").write_text(json.dumps({"study_id": "s1", "landmarks": {"levels": found}}))
    got = landmark_errors(preds, truth)
    assert got["levels_expected"] == 5 and got["levels_found"] == 4 and got["level_accuracy"] == 0.6
    assert got["disc_error_mm_median"] == 3.0
