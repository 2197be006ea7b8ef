"""Inference inputs with one-line errors: a radiograph file or a folder of them (searched recursively)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InputError", "find_radiographs", "inference_datalist"]

SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")


class InputError(ValueError):
    """Bad input: the message is one line that names the file and the problem."""


def _candidate(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.suffix.lower() in SUFFIXES:
        return True
    if path.suffix == "":  # DICOM files often have no suffix: look for the DICM preamble
        try:
            with open(path, "rb") as f:
                f.seek(128)
                return f.read(4) == b"DICM"
        except OSError:
            return False
    return False


def find_radiographs(path: str | os.PathLike) -> list[Path]:
    """The radiograph files at ``path``: the file itself, or every DICOM/PNG/JPEG file under a folder.

    Raises:
        InputError: missing path, or a folder without radiograph files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and _candidate(p))
    if not files:
        raise InputError(f"{path}: folder holds no radiographs (DICOM, PNG or JPEG files)")
    return files


def inference_datalist(path: str | os.PathLike) -> list[dict[str, str]]:
    """``[{"image": file}]`` for inference, every file decoded once first so that a bad one stops the run before
    any output is written.

    Raises:
        InputError: see :func:`find_radiographs` and :func:`scripts.radiograph.read_radiograph`.
    """
    from .radiograph import check_radiograph

    files = find_radiographs(path)
    for f in files:
        check_radiograph(f, decode=True)
    return [{"image": str(f)} for f in files]
