"""nnU-Net v2 datasets and trainers of spineseg: one ``DatasetNNN_Name.py`` converter per dataset, label maps
from :mod:`spine_seg.core.labels`, and trainer variants found by nnU-Net through ``nnUNet_extTrainer``.

Installed as ``spine_seg_nnunet_tasks`` (see pyproject.toml) so it cannot clash with other packages.
"""
