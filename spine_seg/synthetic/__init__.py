"""Synthetic lumbar MRI cohort: competition-layout DICOM, labels and SPIDER-layout masks with exact truth."""

from __future__ import annotations

from spine_seg.synthetic.cohort import CohortConfig, CohortResult, generate_cohort, generate_study

__all__ = ["CohortConfig", "CohortResult", "generate_cohort", "generate_study"]
