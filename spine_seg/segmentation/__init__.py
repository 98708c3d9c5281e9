"""Segmentation stage: nnU-Net paths and environment, in-process prediction, masks → level landmarks."""
