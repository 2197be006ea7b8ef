"""Find the checkpoint to resume training from."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

__all__ = ["latest_checkpoint", "load_weights"]

_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint_epoch=N.pt`` with the largest ``N`` in ``ckpt_dir``, or ``None`` when there is none."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH.search(p.name))]
    return str(max(found)[1]) if found else None


def load_weights(network: torch.nn.Module, path: str | os.PathLike | None) -> torch.nn.Module:
    """Load trained weights of this bundle into ``network`` (weights-only, onto the network's device).

    Used by the fine-tune profile. Accepts a plain state dict (``models/model.pt``) or a full training checkpoint
    (``checkpoint_epoch=N.pt``, whose weights are under ``model``). ``None`` leaves the network as it is.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file's keys or shapes do not fit the network (the message names the file).
    """
    if path is None:
        return network
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint to fine-tune from not found")
    device = next(network.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ValueError(f"{path}: weights do not fit this network ({' '.join(x.strip() for x in first[:3])})") from err
    return network
