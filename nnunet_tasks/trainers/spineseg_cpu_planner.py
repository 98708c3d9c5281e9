"""``ExperimentPlanner_CPUBudget``: nnU-Net's default planner, made affordable on a CPU.

What changes against ``ExperimentPlanner`` (plans ``nnUNetPlans``), all as class attributes:

* in-plane target spacing at least ``inplane_spacing_mm`` = 1.5 mm (sagittal lumbar MRI is ~0.6–0.8 mm):
  about 4× fewer pixels per slice; the slice axis stays the coarsest, so the 2d slices stay the sagittal ones;
* half the feature maps: 16 in the first stage (nnU-Net: 32), at most 256 (2d) / 160 (3d);
* batch size at most ``max_batch_size_2d`` = 4 (2d) / ``max_batch_size_3d`` = 2 (3d).

The topology rules (pooling per axis, patch size clipped to the median image) are nnU-Net's own. The plans
are saved as ``nnUNetPlans_CPUBudget`` (data identifiers ``nnUNetPlans_CPUBudget_2d`` …), next to and never
over the default plans. nnU-Net's ``nnUNetv2_plan_experiment -pl`` only finds planners inside nnunetv2, so
use ``spineseg prepare`` or :func:`spine_seg.segmentation.train.plan_and_preprocess` to run this one.
"""

from __future__ import annotations

import numpy as np
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

CPU_PLANS = "nnUNetPlans_CPUBudget"


class ExperimentPlanner_CPUBudget(ExperimentPlanner):
    inplane_spacing_mm: float = 1.5
    base_num_features: int = 16
    max_features_2d: int = 256
    max_features_3d: int = 160
    max_batch_size_2d: int = 4
    max_batch_size_3d: int = 2

    def __init__(
        self,
        dataset_name_or_id,
        gpu_memory_target_in_gb: float = 8,
        preprocessor_name: str = "DefaultPreprocessor",
        plans_name: str = CPU_PLANS,
        overwrite_target_spacing=None,
        suppress_transpose: bool = False,
    ):
        super().__init__(
            dataset_name_or_id,
            gpu_memory_target_in_gb,
            preprocessor_name,
            plans_name,
            overwrite_target_spacing,
            suppress_transpose,
        )
        self.UNet_base_num_features = self.base_num_features
        self.UNet_max_features_2d = self.max_features_2d
        self.UNet_max_features_3d = self.max_features_3d

    def determine_fullres_target_spacing(self) -> np.ndarray:
        target = np.array(super().determine_fullres_target_spacing(), dtype=float)
        if self.overwrite_target_spacing is not None or self.inplane_spacing_mm <= 0:
            return target
        worst = int(np.argmax(target))
        coarse = np.maximum(target, self.inplane_spacing_mm)
        others = [i for i in range(len(coarse)) if i != worst]
        if others and coarse[worst] <= coarse[others].max():
            coarse[worst] = coarse[others].max() + 1e-5  # keep the slice axis the coarsest: same transpose as before
        return coarse

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset, _cache):
        plan = super().get_plans_for_configuration(
            spacing, median_shape, data_identifier, approximate_n_voxels_dataset, _cache
        )
        cap = self.max_batch_size_2d if len(spacing) == 2 else self.max_batch_size_3d
        plan["batch_size"] = int(max(1, min(plan["batch_size"], cap)))
        return plan
