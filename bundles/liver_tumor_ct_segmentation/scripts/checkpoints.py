"""Checkpoints that survive a kill: atomic saving and a resume that skips unreadable files."""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver", "latest_checkpoint"]

logger = logging.getLogger(__name__)
_EPOCH = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes: each file is written under a temporary name and renamed.

    ``CheckpointSaver`` turns Ignite's atomic saving off (so files keep the group's read permission); a process
    killed while saving then leaves a truncated ``model.pt`` or ``checkpoint_epoch=N.pt``. Here every save handler
    writes atomically again, so a checkpoint on disk is always complete; the files are readable by their owner.
    Takes the same arguments as ``CheckpointSaver``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> str | None:
    """The readable ``checkpoint_epoch=N.pt`` with the largest ``N`` in ``ckpt_dir``, or ``None``.

    A file that is not a complete PyTorch archive (cut short by a kill) is skipped with a warning, so training
    resumes from the last complete checkpoint instead of failing.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH.search(p.name))), reverse=True)
    for _, path in found:
        if zipfile.is_zipfile(path):
            return str(path)
        logger.warning(f"{path}: incomplete checkpoint, skipped")
    return None
