"""Pretrained weights from a local file, with a clear report of what matched.

Nothing is downloaded: ``pretrained_path`` names a file the user has (for example ImageNet ResNet-18 weights saved
from torchvision, or a checkpoint of this bundle). Keys are matched by name after stripping ``module.`` (DDP) and
``model.`` prefixes; MONAI's ResNet uses torchvision's key names, so torchvision checkpoints load directly. A
3-channel first convolution is summed over its input channels for 1-channel inputs (the response to a grey image
replicated on three channels), and the reverse is repeated and divided. Tensors whose shape still differs (a
1000-class ``fc`` head for a 4-class task) are skipped and reported, as are missing and unexpected keys.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .inputs import InputError

__all__ = ["load_pretrained", "with_pretrained"]

logger = logging.getLogger(__name__)

_PREFIXES = ("module.", "model.", "network.", "net.")


def _state_dict(obj) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "network", "net"):
            if key in obj and isinstance(obj[key], dict):
                return _state_dict(obj[key])
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TypeError("not a state dict")
    return obj


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def load_pretrained(network: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load matching weights from ``path`` into ``network`` (in place) and report the rest.

    Args:
        network: the network to initialise.
        path: a ``torch.save`` file holding a state dict (optionally under ``state_dict`` or ``model``).

    Returns:
        ``{"loaded": [...], "adapted": [...], "missing": [...], "unexpected": [...], "mismatched": [...]}``: keys
        loaded as they are, loaded after channel adaptation, in the network but not the file, in the file but not
        the network, and present in both with another shape (skipped).

    Raises:
        InputError: missing or unreadable file, not a state dict, or no key in common with the network.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pretrained weights file not found")
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
        source = {_strip(k): v for k, v in _state_dict(raw).items()}
    except Exception as err:
        raise InputError(f"{path}: not a readable PyTorch state dict ({type(err).__name__}: {err})") from err
    target = network.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "adapted": [], "missing": [], "unexpected": [], "mismatched": []}
    update = {}
    for key, value in source.items():
        if key not in target:
            report["unexpected"].append(key)
            continue
        want = target[key]
        if value.shape == want.shape:
            update[key] = value.to(want.dtype)
            report["loaded"].append(key)
        elif value.ndim == want.ndim >= 3 and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]:
            if want.shape[1] == 1:  # RGB filters for a grey input: their response to a replicated grey image
                update[key] = value.sum(dim=1, keepdim=True).to(want.dtype)
            else:
                reps = -(-want.shape[1] // value.shape[1])
                update[key] = (
                    value.repeat(1, reps, *[1] * (value.ndim - 2))[:, : want.shape[1]] * value.shape[1] / want.shape[1]
                ).to(want.dtype)
            report["adapted"].append(key)
        else:
            report["mismatched"].append(f"{key} {tuple(value.shape)}->{tuple(want.shape)}")
    report["missing"] = [k for k in target if k not in update]
    if not update:
        raise InputError(f"{path}: no weights match the network ({len(source)} keys in the file, none in common)")
    network.load_state_dict(update, strict=False)
    logger.info(
        "pretrained weights %s: %d tensors loaded, %d adapted (%s), %d mismatched shapes skipped (%s), "
        "%d missing in the file (%s), %d unexpected (%s)",
        path,
        len(report["loaded"]),
        len(report["adapted"]),
        ", ".join(report["adapted"]) or "-",
        len(report["mismatched"]),
        ", ".join(report["mismatched"]) or "-",
        len(report["missing"]),
        ", ".join(report["missing"][:8]) + (" ..." if len(report["missing"]) > 8 else "") or "-",
        len(report["unexpected"]),
        ", ".join(report["unexpected"][:8]) + (" ..." if len(report["unexpected"]) > 8 else "") or "-",
    )
    return report


def with_pretrained(network: torch.nn.Module, path: str | os.PathLike | None) -> torch.nn.Module:
    """``network`` after :func:`load_pretrained` from ``path``, or unchanged when ``path`` is ``None`` or empty."""
    if path:
        load_pretrained(network, path)
    return network
