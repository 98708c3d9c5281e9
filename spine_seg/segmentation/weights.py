"""Network weights into a model being trained: the warm start of ``train(init_weights=…)``.

Apart from ``train.py`` because it needs only torch and a checkpoint file, not nnU-Net's trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spine_seg.core.errors import NotFoundError, UsageError


def load_network_weights(network: Any, path: str | Path) -> None:
    """Copy a checkpoint's ``network_weights`` into ``network`` (float16 exports are cast back); every tensor
    must exist with the same shape, else the error names the first that does not."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise NotFoundError(f"{path}: cannot read the checkpoint to start from ({exc})") from exc
    weights = ckpt.get("network_weights") if isinstance(ckpt, dict) else None
    if not isinstance(weights, dict):
        raise UsageError(f"{path}: not an nnU-Net checkpoint (no network_weights)")
    net = getattr(network, "_orig_mod", network)
    own = net.state_dict()
    bad = [k for k, v in own.items() if k not in weights or tuple(weights[k].shape) != tuple(v.shape)]
    if bad:
        raise UsageError(
            f"{path}: its network does not match this plan's ({len(bad)} of {len(own)} tensors differ, first "
            f"{bad[0]}): warm-start only from a model of the same plans"
        )
    net.load_state_dict({k: weights[k].to(v.dtype) for k, v in own.items()})
