"""Input discovery and validation with one-line errors that name the file and the problem.

Inference takes a NIfTI (or NRRD/MetaImage) file, a folder of such files, or a DICOM series folder. Every file is
checked before any work starts, so a truncated or corrupt input fails at once with a clear message instead of deep
inside a loader.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "InputError",
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "check_itk_file",
    "check_nifti",
    "check_dicom_series",
    "find_inputs",
    "inference_datalist",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


class InputError(ValueError):
    """Bad input: the message is one line that names the file and the problem."""


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def is_itk_file(path: Path) -> bool:
    return path.name.lower().endswith(ITK_SUFFIXES)


def is_volume_file(path: Path) -> bool:
    return is_nifti(path) or is_itk_file(path)


def check_itk_file(path: str | os.PathLike, ndim: int | None = 3) -> tuple[int, ...]:
    """Check that an NRRD or MetaImage file has a readable header of a ``ndim``-D image; return its size.

    Raises:
        InputError: missing, unreadable, or of the wrong dimensionality.
    """
    import itk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise OSError("no ITK reader accepts it")
        io.SetFileName(str(path))
        io.ReadImageInformation()
        shape = tuple(int(io.GetDimensions(i)) for i in range(io.GetNumberOfDimensions()))
    except Exception as err:
        raise InputError(f"{path}: not a readable image file ({type(err).__name__}: {err})") from err
    spatial = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
    if ndim is not None and len(spatial) != ndim:
        raise InputError(f"{path}: expected a {ndim}D volume, got size {shape}")
    return spatial


def check_nifti(path: str | os.PathLike, ndim: int | None = 3) -> tuple[tuple[int, ...], np.ndarray]:
    """Check that a NIfTI file is complete and readable, without reading its voxels.

    The header is parsed, and the data size is checked against the file: for ``.nii`` the file length, for
    ``.nii.gz`` the uncompressed size recorded in the gzip trailer (a truncated gzip file has no valid trailer).

    Args:
        path: the file.
        ndim: required number of spatial dimensions (a trailing singleton dimension is allowed), or ``None``.

    Returns:
        the spatial shape and the affine from the header.

    Raises:
        InputError: missing, truncated, corrupt, or of the wrong dimensionality.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        header = img.header
        shape = tuple(int(s) for s in img.shape)
        expected = int(img.dataobj.offset) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    except Exception as err:  # nibabel raises many types for corrupt headers
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if path.name.lower().endswith(".gz"):
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < 18 or f.read(2) != b"\x1f\x8b":
                raise InputError(f"{path}: not a gzip file")
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
        if isize != expected % 2**32:
            raise InputError(f"{path}: truncated or corrupt gzip stream (expected {expected} bytes of NIfTI data)")
    elif path.stat().st_size < expected:
        raise InputError(f"{path}: truncated NIfTI file ({path.stat().st_size} of {expected} bytes)")
    spatial = shape[:3] if len(shape) == 4 and shape[3] == 1 else shape
    if ndim is not None and len(spatial) != ndim:
        raise InputError(f"{path}: expected a {ndim}D volume, got shape {shape}")
    return spatial, np.asarray(img.affine)


def check_gzip_stream(path: str | os.PathLike) -> None:
    """Decompress a whole ``.gz`` file to check its stream (slower than :func:`check_nifti`, exact)."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: truncated or corrupt gzip stream ({err})") from err


def check_dicom_series(folder: str | os.PathLike, modality: str | None = "CT") -> list[Path]:
    """Check a folder holding one DICOM series and return its files.

    Raises:
        InputError: no DICOM files, unreadable files, more than one series, or a modality other than ``modality``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    series: dict[str, list[Path]] = {}
    modalities = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM (a readme, a thumbnail): ignored as ITK does
        except Exception as err:
            raise InputError(f"{f}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        if "PixelData" not in ds and "SeriesInstanceUID" in ds and getattr(ds, "Rows", None) is None:
            continue
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
        modalities.add(str(ds.get("Modality", "")))
    if not series:
        raise InputError(f"{folder}: no DICOM files found")
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(v)} files)" for uid, v in series.items())
        raise InputError(f"{folder}: holds {len(series)} DICOM series ({counts}); give one series per folder")
    if modality is not None and modalities != {modality}:
        raise InputError(f"{folder}: DICOM modality {', '.join(sorted(modalities))} is not {modality}")
    return next(iter(series.values()))


def find_inputs(path: str | os.PathLike) -> list[str]:
    """The inputs under ``path``: the NIfTI file itself, the NIfTI files of a folder, or a DICOM series folder.

    Raises:
        InputError: when ``path`` does not exist or holds no NIfTI file and no DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if is_volume_file(path):
            return [str(path)]
        if _looks_like_dicom(path):
            return [str(path.parent)]
        raise InputError(f"{path}: not a NIfTI file (.nii, .nii.gz), an NRRD/MetaImage file or a DICOM file")
    niftis = sorted(str(p) for p in path.iterdir() if p.is_file() and is_volume_file(p) and not p.name.startswith("."))
    if niftis:
        return niftis
    if any(_looks_like_dicom(p) for p in path.iterdir() if p.is_file()):
        return [str(path)]
    raise InputError(f"{path}: folder holds no NIfTI files (.nii, .nii.gz) and no DICOM series")


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def inference_datalist(path: str | os.PathLike, modality: str | None = "CT") -> list[dict[str, str]]:
    """Datalist ``[{"image": ...}]`` for inference on ``path``, every input checked first (see :func:`find_inputs`)."""
    items = []
    for item in find_inputs(path):
        if Path(item).is_dir():
            check_dicom_series(item, modality=modality)
        elif is_itk_file(Path(item)):
            check_itk_file(item)
        else:
            check_nifti(item)
        items.append({"image": item})
    return items
