"""In-process nnU-Net prediction of a DICOM stack: a label volume on the stack's own voxel grid.

The model is loaded once (:meth:`SegmentationModel.from_folder`); each :meth:`~SegmentationModel.predict_stack`
feeds the stack's pixels as nnU-Net expects them: image ``[channel, k, j, i]`` (SimpleITK's axis order, which
the training images keep) with ``props={"spacing": (slice, row, column spacing)}``, i.e. the stack's ijk
spacing reversed. nnU-Net resamples to the model's spacing and back, so the labels come out on the stack's grid.

Test-time mirroring (:data:`MIRRORING_MODES`) is ``"superior_inferior"`` by default, on any device: each
slice is also predicted upside down and the two are averaged (2× the cost). Measured on the shipped base model
over the 37 real volumes, cross-validated (docs/base-model.md): none 141/149 levels named right, the
superior–inferior flip 149/149, the anterior–posterior flip 141/149, both (nnU-Net's own default, 4× the cost)
145/149. The network names vertebra from sacrum by what lies below a body; seen the other way up, the context
of the lumbosacral junction changes, and the average settles the bodies that one view calls sacrum.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from spine_seg.core.choices import Mirroring, values
from spine_seg.core.errors import NotFoundError, UsageError
from spine_seg.core.geometry import set_sitk_geometry
from spine_seg.segmentation import nnunet_env

if TYPE_CHECKING:  # pragma: no cover
    from spine_seg.dicom.model import Stack

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint_final.pth"

#: Test-time mirroring: ``"none"``; ``"superior_inferior"``: the axis of the network's input nearest the
#: patient's S–I axis (from the stack's affine), 2× the cost; ``"all"``: every axis the model allows (4× in 2d,
#: 8× in 3d). The first is the default (see the module docstring for why).
MIRRORING_MODES = values(Mirroring)
DEFAULT_MIRRORING = Mirroring.SUPERIOR_INFERIOR.value


def mirroring_mode(mirroring: str | bool | None) -> str:
    """One of :data:`MIRRORING_MODES` from a mode, a bool (``True``: all, ``False``: none) or ``None`` (default)."""
    if mirroring is None:
        return DEFAULT_MIRRORING
    if isinstance(mirroring, bool):
        return "all" if mirroring else "none"
    if mirroring not in MIRRORING_MODES:
        raise UsageError(f"unknown mirroring {mirroring!r}; valid: {', '.join(MIRRORING_MODES)}")
    return str(mirroring)


def superior_inferior_axis(affine: Any) -> int:
    """The array axis (of ``[k, j, i]``) whose direction is nearest the patient's S–I axis."""
    columns = np.asarray(affine, dtype=float)[:3, :3]  # column m: direction of array axis 2 - m
    si = np.abs(columns[2]) / np.maximum(np.linalg.norm(columns, axis=0), 1e-9)
    return 2 - int(np.argmax(si))


@dataclass(frozen=True, eq=False)
class LabelVolume:
    """Labels of one stack: ``labels`` uint8 ``[k, j, i]`` on the stack's grid, ``affine`` (i, j, k, 1) → LPS mm,
    ``label_names`` value → name (background included). Arrays are read-only copies."""

    labels: np.ndarray
    affine: np.ndarray
    label_names: Mapping[int, str]

    def __post_init__(self) -> None:
        labels = np.array(self.labels, dtype=np.uint8, copy=True)
        affine = np.array(self.affine, dtype=float, copy=True)
        if labels.ndim != 3:
            raise UsageError(f"labels must be 3-D [k, j, i], got shape {labels.shape}")
        if affine.shape != (4, 4):
            raise UsageError(f"affine must be 4×4, got {affine.shape}")
        labels.setflags(write=False)
        affine.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "label_names", MappingProxyType({int(k): str(v) for k, v in self.label_names.items()}))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size in ijk order, from the affine's columns."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    def value_of(self, name: str) -> int:
        for value, n in self.label_names.items():
            if n == name:
                return value
        raise NotFoundError(f"no label {name!r}; valid: {list(self.label_names.values())}")

    def mask(self, name: str) -> np.ndarray:
        return self.labels == self.value_of(name)

    def voxel_counts(self) -> dict[str, int]:
        """Voxels per label name (labels without a name are reported by their value)."""
        values, counts = np.unique(self.labels, return_counts=True)
        return {self.label_names.get(int(v), str(int(v))): int(c) for v, c in zip(values, counts, strict=True)}

    def present(self) -> tuple[str, ...]:
        """Names of the foreground labels with at least one voxel, in label order."""
        values = set(np.unique(self.labels).tolist()) - {0}
        return tuple(self.label_names.get(v, str(v)) for v in sorted(values))

    def save(self, path: str | Path) -> Path:
        """Write the labels with their patient geometry (SimpleITK: .nii.gz, .mha, .nrrd …; LPS as DICOM)."""
        import SimpleITK as sitk

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        img = set_sitk_geometry(sitk.GetImageFromArray(self.labels), self.affine, unshear=False)
        sitk.WriteImage(img, str(path), useCompression=True)
        return path


@contextlib.contextmanager
def predictor_threads(n: int) -> Iterator[None]:
    """Let nnU-Net's predictor use ``n`` torch threads (it caps them at ``nnUNet_def_n_proc``, read once at
    import into the module global ``default_num_processes``); restores the global and torch's count after."""
    import torch
    from nnunetv2.inference import predict_from_raw_data as nnunet_predict

    cap, before = nnunet_predict.default_num_processes, torch.get_num_threads()
    nnunet_predict.default_num_processes = max(1, n)
    try:
        yield
    finally:
        nnunet_predict.default_num_processes = cap
        torch.set_num_threads(before)


class SegmentationModel:
    """A trained nnU-Net model held in memory; build it with :meth:`from_folder`."""

    def __init__(
        self,
        predictor: Any,
        result_folder: Path,
        folds: tuple[int | str, ...],
        device: str,
        mirroring: str,
        label_names: Mapping[int, str],
        num_channels: int,
        threads: int = 1,
    ) -> None:
        self.predictor = predictor
        self.result_folder = result_folder
        self.folds = folds
        self.device = device
        self.mirroring = mirroring
        self._all_mirror_axes: tuple[int, ...] | None = None
        self.label_names = MappingProxyType(dict(label_names))
        self.num_channels = num_channels
        self.threads = threads

    def __repr__(self) -> str:
        return (
            f"SegmentationModel({str(self.result_folder)!r}, folds={self.folds}, device={self.device!r}, "
            f"mirroring={self.mirroring})"
        )

    @classmethod
    def from_folder(
        cls,
        result_folder: str | Path,
        fold: int | str | Sequence[int | str] | None = 0,
        device: str = "auto",
        *,
        mirroring: str | bool | None = None,
        checkpoint: str = CHECKPOINT,
        tile_step_size: float = 0.5,
        threads: int | None = None,
    ) -> SegmentationModel:
        """Load ``result_folder`` (``…/DatasetNNN_Name/<Trainer>__<Plans>__<config>``, as :func:`train` returns).

        ``fold``: one fold, several (their predictions are averaged), or ``None`` for every fold with a
        checkpoint. ``mirroring``: one of :data:`MIRRORING_MODES` (``True``/``False``: all/none; default
        ``"superior_inferior"``, on a CPU as on CUDA). ``threads``: torch
        threads while predicting; default ``nnUNet_def_n_proc`` on a CPU (nnU-Net's own cap; 1 on a 2-core
        machine, where 2 threads made a small stack 20× slower whenever another process kept a core busy),
        1 on CUDA.
        """
        from spine_seg.segmentation.train import parse_fold, resolve_device

        folder = Path(result_folder)
        for required in ("plans.json", "dataset.json"):
            if not (folder / required).is_file():
                raise FileNotFoundError(f"{folder}: not an nnU-Net result folder ({required} missing)")
        available = sorted(p.parent.name[len("fold_") :] for p in folder.glob(f"fold_*/{checkpoint}"))
        if fold is None:
            folds: tuple[int | str, ...] = tuple(parse_fold(f) for f in available)
        elif isinstance(fold, int | str):
            folds = (parse_fold(fold),)
        else:
            folds = tuple(parse_fold(f) for f in fold)
        missing = [f for f in folds if str(f) not in available]
        if not folds or missing:
            raise FileNotFoundError(
                f"{folder}: no {checkpoint} for fold(s) {missing or 'any'}; available: {available or 'none'}"
            )
        mode = mirroring_mode(mirroring)
        dev = resolve_device(device)

        env = nnunet_env.apply(require=())  # nnUNet_extTrainer: the checkpoint names its trainer class
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(
                tile_step_size=tile_step_size,
                use_gaussian=True,
                use_mirroring=mode != "none",
                perform_everything_on_device=dev.type == "cuda",
                device=dev,
                verbose=False,
                verbose_preprocessing=False,
                allow_tqdm=False,
            )
            predictor.initialize_from_trained_model_folder(str(folder), folds, checkpoint_name=checkpoint)
        dataset_json = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
        names = {int(v): str(k) for k, v in dataset_json.get("labels", {}).items() if isinstance(v, int)}
        n_channels = len(dataset_json.get("channel_names", dataset_json.get("modality", {"0": "MRI"})))
        n_threads = threads if threads is not None else (int(env.n_proc) if dev.type == "cpu" else 1)
        return cls(predictor, folder, folds, str(dev), mode, names, n_channels, max(1, int(n_threads)))

    def predict_array(self, volume_kji: np.ndarray, spacing_mm_ijk: Sequence[float], affine: Any = None) -> np.ndarray:
        """Labels (uint8, same shape) of a float volume ``[k, j, i]`` whose voxel size is ``spacing_mm_ijk``.

        ``affine`` (voxel → LPS, only its directions are read) tells ``"superior_inferior"`` mirroring which axis
        to flip; without it the rows (``j``) are taken for S–I, as in a sagittal or coronal series."""
        volume = np.asarray(volume_kji, dtype=np.float32)
        if volume.ndim != 3:
            raise UsageError(f"volume must be 3-D [k, j, i], got shape {volume.shape}")
        if self.num_channels != 1:
            raise UsageError(f"this model expects {self.num_channels} input channels; a stack gives 1")
        if len(spacing_mm_ijk) != 3 or min(spacing_mm_ijk) <= 0:
            raise UsageError(f"spacing_mm_ijk must be three positive numbers, got {spacing_mm_ijk}")
        si, sj, sk = (float(s) for s in spacing_mm_ijk)
        self._set_mirror_axes(1 if affine is None else superior_inferior_axis(affine))
        with predictor_threads(self.threads), contextlib.redirect_stdout(io.StringIO()):
            seg = self.predictor.predict_single_npy_array(volume[None], {"spacing": [sk, sj, si]}, None, None, False)
        seg = np.asarray(seg)
        if seg.shape != volume.shape:  # pragma: no cover - nnU-Net guarantees this
            raise RuntimeError(f"nnU-Net returned shape {seg.shape} for input {volume.shape}")
        return seg.astype(np.uint8, copy=False)

    def _set_mirror_axes(self, si_axis: int) -> None:
        """nnU-Net's mirror axes for this prediction: they index the network input's spatial axes, i.e. the
        array after the plans' ``transpose_forward``, without the slice axis in 2d."""
        if self.mirroring == "none":
            return
        if self._all_mirror_axes is None:
            self._all_mirror_axes = tuple(self.predictor.allowed_mirroring_axes or ())
        if self.mirroring == "all":
            self.predictor.allowed_mirroring_axes = self._all_mirror_axes
            return
        transpose = list(self.predictor.plans_manager.transpose_forward)
        position = transpose.index(si_axis)
        if len(self.predictor.configuration_manager.patch_size) == 2:
            position -= 1  # 2d: axis 0 of the transposed volume is the slice axis, not an input axis
        axes = (position,) if position in self._all_mirror_axes else ()
        self.predictor.allowed_mirroring_axes = axes
        self.predictor.use_mirroring = bool(axes)

    def predict_stack(self, stack: Stack) -> LabelVolume:
        """Segment one stack (``stack.load()`` pixels); the result shares the stack's grid and affine."""
        t0 = time.perf_counter()
        labels = self.predict_array(stack.load(), stack.spacing_mm, stack.affine)
        log.info(
            "segmented series %s stack %d %s in %.1f s",
            stack.series_id,
            stack.index,
            stack.shape,
            time.perf_counter() - t0,
        )
        return LabelVolume(labels, np.asarray(stack.affine), self.label_names)
