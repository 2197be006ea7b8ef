"""An atomic NIfTI writer for ``SaveImaged``: a file appears complete or not at all."""

from __future__ import annotations

import os
from pathlib import Path

from monai.data import NibabelWriter

__all__ = ["AtomicNibabelWriter"]


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes to a hidden temporary name beside the target and renames it when done."""

    def write(self, filename, verbose: bool = False, **obj_kwargs) -> None:  # noqa: D102 (MONAI signature)
        target = Path(filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(target.suffixes) or ".nii.gz"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part{suffix}")
        try:
            super().write(str(tmp), verbose=verbose, **obj_kwargs)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()
