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

Thin slices are predicted as slabs (:data:`DEFAULT_SLAB_MM`): a 2d model learned sagittal slices 3–6 mm thick,
with their partial volume, so consecutive thin slices are averaged into slabs of about that thickness, the
slabs predicted, and each thin slice given its slab's labels. A 1 mm series of 77 slices costs 19 slab
predictions instead of 77, and looks like what the network saw in training. A 3d model gets the slices as
they are.

On a CPU the network runs in bfloat16 where the CPU computes it natively (:data:`PRECISIONS`, ``"auto"``);
nnU-Net already accumulates the tiles in float16. Speed and the levels named, measured, are in
docs/base-model.md ("Prediction speed").
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from spine_seg.core.choices import Mirroring, Precision, values
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


#: Network arithmetic on a CPU (:class:`~spine_seg.core.choices.Precision`); ``"auto"``: bfloat16 where native.
PRECISIONS = values(Precision)
DEFAULT_PRECISION = Precision.AUTO.value

#: Thickness (mm) of the slabs a 2d model predicts thin slices as; slices at least ``2/3`` of it thick are
#: predicted one by one. The base model's training slices are 3–6 mm (synthetic) and 3–5 mm (real volumes
#: resliced), so 4 mm sits in the middle.
DEFAULT_SLAB_MM = 4.0

#: nnU-Net's sliding-window step, a fraction of the patch (its own default), across the spine. 0.75 puts 2 × 2
#: patches (192² at 1.25 mm) on a 381 mm field of view instead of 3 × 3, but the column then lies where two
#: patches meet: on VB2 the disc error went from 1.37 to 1.63 mm and one volume was named a level off
#: (docs/base-model.md, "Prediction speed"). A clinical 220–260 mm field of view gets 2 × 2 either way.
DEFAULT_TILE_STEP = 0.5

#: The step along the in-plane axis nearest the patient's superior–inferior axis (the column's own axis) in a
#: 2d model: 3 × 2 patches instead of 3 × 3 on a 381 mm field of view, the column still in the middle of one
#: patch across it. Measured on VB2, cross-validated: the same 68/68 levels, 1.35 vs 1.36 mm, Dice 0.86,
#: and a third less time.
DEFAULT_TILE_STEP_SI = 0.75


#: ``SegmentationModel.from_folder`` keyword arguments for nnU-Net's own prediction, without spineseg's
#: additions (no flip, float32, thin slices one by one, nnU-Net's square tile layout): what the pseudo-labelling
#: of the shipped model's recipe and the older benchmarks' recorded numbers were made with, so they rebuild alike.
NNUNET_AS_IS: Mapping[str, Any] = MappingProxyType(
    {"mirroring": "none", "precision": "float32", "slab_mm": None, "tile_step_si": None}
)


def slab_sizes(n_slices: int, slice_spacing_mm: float, slab_mm: float | None) -> tuple[int, ...]:
    """How many consecutive slices go into each slab, in order: ``round(slab_mm / slice_spacing_mm)`` each,
    a remainder of less than half a slab added to the last one (it is a slab of its own otherwise). All ones
    (no averaging) when ``slab_mm`` is ``None`` or 0, or the slices are already at least ``2/3`` of it."""
    if n_slices < 1:
        raise UsageError(f"a volume needs at least one slice, got {n_slices}")
    if not 0 < slice_spacing_mm < np.inf:  # NaN fails too
        raise UsageError(f"slice spacing must be positive, got {slice_spacing_mm}")
    if slab_mm is not None and slab_mm < 0:
        raise UsageError(f"slab_mm must be positive, 0 or None (no slabs), got {slab_mm}")
    per_slab = 1 if not slab_mm else int(round(slab_mm / slice_spacing_mm))
    if per_slab < 2 or n_slices < per_slab:
        return (1,) * n_slices
    full, rest = divmod(n_slices, per_slab)
    sizes = [per_slab] * full
    if 2 * rest >= per_slab:
        sizes.append(rest)
    else:
        sizes[-1] += rest
    return tuple(sizes)


def average_slabs(volume_kji: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Mean of each run of ``sizes`` consecutive slices (float32): the partial volume of a thick slice."""
    if sum(sizes) != volume_kji.shape[0]:
        raise UsageError(f"slab sizes {tuple(sizes)} do not add up to the {volume_kji.shape[0]} slices")
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
    sums = np.add.reduceat(np.asarray(volume_kji, dtype=np.float32), starts, axis=0)
    return sums / np.asarray(sizes, dtype=np.float32)[:, None, None]


@functools.cache
def spine_predictor_class() -> type:
    """nnU-Net's predictor with a sliding-window step per network input axis (``axis_steps``: axis → step;
    the others keep ``tile_step_size``). Built on first use: nnU-Net is imported only to predict."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    class SpinePredictor(nnUNetPredictor):  # type: ignore[misc, valid-type]
        axis_steps: Mapping[int, float] = MappingProxyType({})

        def _internal_maybe_mirror_and_predict(self, x: Any) -> Any:
            """nnU-Net's test-time mirroring with the patch and its flipped copies in one batch: the same
            average (instance norm is per sample), one network call instead of several, about 10 % faster on a
            CPU."""
            import torch

            axes = self.allowed_mirroring_axes if self.use_mirroring else None
            if not axes or x.shape[0] != 1:
                return super()._internal_maybe_mirror_and_predict(x)
            spatial = [a + 2 for a in axes]
            flips = [c for n in range(1, len(spatial) + 1) for c in itertools.combinations(spatial, n)]
            with torch.inference_mode():
                out = self.network(torch.cat([x, *(torch.flip(x, f) for f in flips)]))
                prediction = out[:1].clone()
                for i, f in enumerate(flips, start=1):
                    prediction += torch.flip(out[i : i + 1], f)
                return prediction / (len(flips) + 1)

        def _internal_get_sliding_window_slicers(self, image_size: tuple[int, ...]) -> list[tuple[slice | int, ...]]:
            if not self.axis_steps:
                return super()._internal_get_sliding_window_slicers(image_size)
            patch = tuple(int(p) for p in self.configuration_manager.patch_size)
            lead = len(image_size) - len(patch)  # 1 in 2d: the slice axis, predicted slice by slice
            spatial = tuple(image_size[lead:])
            starts = [
                compute_steps_for_sliding_window(spatial, patch, self.axis_steps.get(a, self.tile_step_size))[a]
                for a in range(len(patch))
            ]
            heads: list[tuple[slice | int, ...]] = (
                [(slice(None), d) for d in range(image_size[0])] if lead else [(slice(None),)]
            )
            return [
                (*head, *(slice(s, s + p) for s, p in zip(corner, patch, strict=True)))
                for head in heads
                for corner in itertools.product(*starts)
            ]

    return SpinePredictor


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere it is emulated, slowly."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's capability checks
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def precision_mode(precision: str | None, device_type: str) -> str:
    """The arithmetic a prediction runs in: ``"float16"`` on CUDA (nnU-Net's autocast, always), else
    ``"bfloat16"`` or ``"float32"``; ``"auto"``/``None`` picks bfloat16 on a CPU that has it natively."""
    precision = DEFAULT_PRECISION if precision is None else str(precision)
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if device_type == "cuda":
        return "float16"
    if precision == Precision.AUTO:
        return Precision.BFLOAT16.value if cpu_has_native_bfloat16() else Precision.FLOAT32.value
    if precision == Precision.BFLOAT16 and not cpu_has_native_bfloat16():
        log.warning("precision bfloat16 on a CPU without native bfloat16: emulated, slower than float32")
    return precision


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
        precision: str = "float32",
        slab_mm: float | None = None,
        tile_step_si: float | None = None,
    ) -> None:
        self.predictor = predictor
        self.result_folder = result_folder
        self.folds = folds
        self.device = device
        self.mirroring = mirroring
        self.precision = precision
        self.slab_mm = slab_mm
        self.tile_step_si = tile_step_si
        self._all_mirror_axes: tuple[int, ...] | None = None
        self.label_names = MappingProxyType(dict(label_names))
        self.num_channels = num_channels
        self.threads = threads

    def __repr__(self) -> str:
        return (
            f"SegmentationModel({str(self.result_folder)!r}, folds={self.folds}, device={self.device!r}, "
            f"mirroring={self.mirroring}, precision={self.precision}, slab_mm={self.slab_mm}, "
            f"tile_step={self.predictor.tile_step_size}/{self.tile_step_si} (S–I))"
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
        tile_step_size: float = DEFAULT_TILE_STEP,
        tile_step_si: float | None = DEFAULT_TILE_STEP_SI,
        threads: int | None = None,
        precision: str | None = None,
        slab_mm: float | None = DEFAULT_SLAB_MM,
    ) -> SegmentationModel:
        """Load ``result_folder`` (``…/DatasetNNN_Name/<Trainer>__<Plans>__<config>``, as :func:`train` returns).

        ``fold``: one fold, several (their predictions are averaged), or ``None`` for every fold with a
        checkpoint. ``mirroring``: one of :data:`MIRRORING_MODES` (``True``/``False``: all/none; default
        ``"superior_inferior"``, on a CPU as on CUDA). ``precision``: one of :data:`PRECISIONS` (default
        ``"auto"``). ``slab_mm``: a 2d model predicts thinner slices as slabs about this thick (``None``: never;
        :func:`slab_sizes`). ``tile_step_size``: nnU-Net's sliding-window step (:data:`DEFAULT_TILE_STEP`);
        ``tile_step_si``: a 2d model's step along the patient's S–I axis (:data:`DEFAULT_TILE_STEP_SI`; ``None``:
        ``tile_step_size``).
        ``threads``: torch
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
        arithmetic = precision_mode(precision, dev.type)
        for name, step in (("tile_step_size", tile_step_size), ("tile_step_si", tile_step_si)):
            if step is not None and not 0 < step <= 1:
                raise UsageError(f"{name} must be in (0, 1], got {step}")
        if slab_mm is not None and slab_mm < 0:
            raise UsageError(f"slab_mm must be positive, 0 or None (no slabs), got {slab_mm}")

        env = nnunet_env.apply(require=())  # nnUNet_extTrainer: the checkpoint names its trainer class
        with contextlib.redirect_stdout(io.StringIO()):
            predictor = spine_predictor_class()(
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
        is_2d = len(predictor.configuration_manager.patch_size) == 2
        return cls(
            predictor,
            folder,
            folds,
            str(dev),
            mode,
            names,
            n_channels,
            max(1, int(n_threads)),
            precision=arithmetic,
            slab_mm=(slab_mm or None) if is_2d else None,
            tile_step_si=tile_step_si if is_2d else None,
        )

    def predict_array(self, volume_kji: np.ndarray, spacing_mm_ijk: Sequence[float], affine: Any = None) -> np.ndarray:
        """Labels (uint8, same shape) of a float volume ``[k, j, i]`` whose voxel size is ``spacing_mm_ijk``.

        ``affine`` (voxel → LPS, only its directions are read) tells ``"superior_inferior"`` mirroring which axis
        to flip; without it the rows (``j``) are taken for S–I, as in a sagittal or coronal series. Slices
        thinner than the model's slabs are predicted as slabs (:func:`slab_sizes`), the labels given back to
        every slice."""
        volume = np.asarray(volume_kji, dtype=np.float32)
        if volume.ndim != 3:
            raise UsageError(f"volume must be 3-D [k, j, i], got shape {volume.shape}")
        if self.num_channels != 1:
            raise UsageError(f"this model expects {self.num_channels} input channels; a stack gives 1")
        if len(spacing_mm_ijk) != 3 or not all(0 < float(s) < np.inf for s in spacing_mm_ijk):  # NaN fails too
            raise UsageError(f"spacing_mm_ijk must be three positive numbers, got {spacing_mm_ijk}")
        si, sj, sk = (float(s) for s in spacing_mm_ijk)
        si_axis = 1 if affine is None else superior_inferior_axis(affine)
        self._set_mirror_axes(si_axis)
        self._set_tile_steps(si_axis)
        sizes = slab_sizes(volume.shape[0], sk, self.slab_mm)
        slabbed = len(sizes) < volume.shape[0]
        net_input = average_slabs(volume, sizes) if slabbed else volume
        slab_k = sk * volume.shape[0] / len(sizes)
        with predictor_threads(self.threads), self._arithmetic(), contextlib.redirect_stdout(io.StringIO()):
            seg = self.predictor.predict_single_npy_array(
                net_input[None], {"spacing": [slab_k, sj, si]}, None, None, False
            )
        seg = np.asarray(seg)
        if seg.shape != net_input.shape:  # pragma: no cover - nnU-Net guarantees this
            raise RuntimeError(f"nnU-Net returned shape {seg.shape} for input {net_input.shape}")
        if slabbed:
            seg = np.repeat(seg, sizes, axis=0)
        return seg.astype(np.uint8, copy=False)

    def _arithmetic(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast when asked (only ever on a CPU: :func:`precision_mode` gives CUDA nnU-Net's float16)."""
        if self.precision != Precision.BFLOAT16:
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def _input_axis(self, si_axis: int) -> int:
        """The network input's axis for array axis ``si_axis`` of ``[k, j, i]``: after the plans'
        ``transpose_forward``, without the slice axis in 2d (-1: it is the 2d slice axis)."""
        transpose = list(self.predictor.plans_manager.transpose_forward)
        position = transpose.index(si_axis)
        if len(self.predictor.configuration_manager.patch_size) == 2:
            position -= 1  # 2d: axis 0 of the transposed volume is the slice axis, not an input axis
        return position

    def _set_tile_steps(self, si_axis: int) -> None:
        """The coarser :attr:`tile_step_si` along the S–I input axis, where a 2d model has one."""
        position = self._input_axis(si_axis) if self.tile_step_si is not None else -1
        self.predictor.axis_steps = MappingProxyType({position: self.tile_step_si} if position >= 0 else {})

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
        position = self._input_axis(si_axis)
        axes = (position,) if position in self._all_mirror_axes else ()
        self.predictor.allowed_mirroring_axes = axes
        self.predictor.use_mirroring = bool(axes)

    def predict_stack(self, stack: Stack, pixels: np.ndarray | None = None) -> LabelVolume:
        """Segment one stack (``pixels``: its ``stack.load()``, read here when not given; a caller that needs
        them too reads the series once); the result shares the stack's grid and affine."""
        t0 = time.perf_counter()
        labels = self.predict_array(stack.load() if pixels is None else pixels, stack.spacing_mm, stack.affine)
        log.info(
            "segmented series %s stack %d %s in %.1f s",
            stack.series_id,
            stack.index,
            stack.shape,
            time.perf_counter() - t0,
        )
        return LabelVolume(labels, np.asarray(stack.affine), self.label_names)
