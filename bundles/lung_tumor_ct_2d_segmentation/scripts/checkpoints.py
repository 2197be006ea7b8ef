"""Find the checkpoint to resume training from, load trained weights, and check which checkpoint becomes the model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

__all__ = ["SELECTIONS", "check_selection", "latest_checkpoint", "load_weights"]

#: ways to choose the weights saved as ``models/model.pt``
SELECTIONS = ("best", "last")

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


def check_selection(selection: str) -> str:
    """Check the ``checkpoint_selection`` setting: which weights training saves as ``models/model.pt``.

    ``best``: the epoch with the best validation key metric (validation Dice); ``last``: the final epoch's weights
    (as nnU-Net does), for when the validation set is too small for the metric to rank epochs.

    Raises:
        ValueError: anything else (the message names the choices).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"checkpoint_selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    return selection
