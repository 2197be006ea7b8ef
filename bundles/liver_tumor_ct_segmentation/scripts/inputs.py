"""Input discovery and validation with one-line errors that name the file and the problem.

Inference takes a NIfTI file, a folder of NIfTI files, or a DICOM series folder. Every file is checked before any
work starts, so a truncated or corrupt input fails at once with a clear message instead of deep inside a loader.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "InputError",
    "NIFTI_SUFFIXES",
    "available_memory_bytes",
    "check_nifti",
    "check_dicom_series",
    "find_inputs",
    "inference_datalist",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad input: the message is one line that names the file and the problem."""


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


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
    """Check a folder holding one complete DICOM series and return its files.

    Every file is read (the pixel data too, without decoding it): a file that is not DICOM is ignored as ITK ignores
    it; the series must be one series of the expected modality, with uncompressed pixel data of the full size and
    slices evenly spaced along the slice normal (no duplicates, no missing slices).

    Raises:
        InputError: no DICOM files, unreadable or truncated files, more than one series, another modality, or
            duplicate or missing slices.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    series: dict[str, list[tuple[Path, object]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except InvalidDicomError:
            continue  # not DICOM (a readme, a thumbnail): ignored as ITK does
        except Exception as err:
            raise InputError(f"{f}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        try:
            for _ in ds.iterall():  # parse every element now: a corrupt one fails here, with its file's name
                pass
            if not _is_complete_image(f, ds):
                continue
            uid = str(ds.get("SeriesInstanceUID", ""))
        except InputError:
            raise
        except Exception as err:  # pydicom parses lazily: a corrupt element fails only when it is read
            raise InputError(f"{f}: malformed DICOM file ({type(err).__name__}: {err})") from err
        series.setdefault(uid, []).append((f, ds))
    if not series:
        raise InputError(f"{folder}: no DICOM files found")
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(v)} files)" for uid, v in series.items())
        raise InputError(f"{folder}: holds {len(series)} DICOM series ({counts}); give one series per folder")
    items = next(iter(series.values()))
    modalities = {str(ds.get("Modality", "")) for _, ds in items}
    if modality is not None and modalities != {modality}:
        raise InputError(f"{folder}: DICOM modality {', '.join(sorted(modalities))} is not {modality}")
    try:
        _check_slice_positions(folder, items)
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{folder}: malformed slice position or orientation ({type(err).__name__}: {err})") from err
    return [f for f, _ in items]


def _is_complete_image(f: Path, ds) -> bool:
    """Whether ``ds`` is an image (``False`` for a DICOMDIR or a report); an image must hold all its pixel data."""
    if getattr(ds, "Rows", None) is None:
        return False
    if "PixelData" not in ds:
        raise InputError(f"{f}: DICOM file has no complete pixel data (truncated?)")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and not syntax.is_compressed:
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
        expected *= int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated) // 8
        if len(ds.PixelData) < expected:
            raise InputError(f"{f}: truncated pixel data ({len(ds.PixelData)} of {expected} bytes)")
    return True


def _check_slice_positions(folder: Path, items: list) -> None:
    """Slices of a series must be distinct and evenly spaced along the slice normal."""
    if len(items) < 3 or any(
        "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds for _, ds in items
    ):
        return
    orientation = np.asarray(items[0][1].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted((float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)), f) for f, ds in items)
    gaps = np.diff([p for p, _ in positions])
    step = float(np.median(gaps))
    for gap, (_, f0), (_, f1) in zip(gaps, positions[:-1], positions[1:], strict=True):
        if gap < 1e-3:
            raise InputError(f"{folder}: two slices at the same position ({f0.name}, {f1.name})")
        if gap > 1.5 * step:
            raise InputError(
                f"{folder}: missing slices: a gap of {gap:.2f} mm between {f0.name} and {f1.name} "
                f"(slice spacing {step:.2f} mm)"
            )


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` (Linux), or ``None`` where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def find_inputs(path: str | os.PathLike) -> list[str]:
    """The inputs under ``path``: the NIfTI file itself, the NIfTI files of a folder, or a DICOM series folder.

    Raises:
        InputError: when ``path`` does not exist or holds no NIfTI file and no DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if is_nifti(path):
            return [str(path)]
        if _looks_like_dicom(path):
            return [str(path.parent)]
        raise InputError(f"{path}: not a NIfTI file (.nii, .nii.gz) or a DICOM file")
    niftis = sorted(str(p) for p in path.iterdir() if p.is_file() and is_nifti(p) and not p.name.startswith("."))
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


def inference_datalist(
    path: str | os.PathLike,
    modality: str | None = "CT",
    output_dir: str | os.PathLike | None = None,
    output_postfix: str = "seg",
    bytes_per_voxel: float | None = None,
) -> list[dict[str, str]]:
    """Datalist ``[{"image": ...}]`` for inference on ``path``, every input checked first (see :func:`find_inputs`).

    Args:
        path: a NIfTI file, a folder of NIfTI files, or a DICOM series folder.
        modality: the DICOM modality a series must have (``None``: any).
        output_dir: when given, inputs whose output ``<output_dir>/<name>_<output_postfix>.nii.gz`` already exists
            are skipped, so a rerun after an interruption finishes the folder.
        output_postfix: the postfix ``SaveImaged`` adds.
        bytes_per_voxel: memory the pipeline needs per input voxel; an input that would not fit in the memory
            available now is refused with a message instead of being killed by the kernel.

    Raises:
        InputError: bad input, or not enough memory.
    """
    items = []
    available = available_memory_bytes() if bytes_per_voxel else None
    for item in find_inputs(path):
        if Path(item).is_dir():
            import pydicom

            files = check_dicom_series(item, modality=modality)
            header = pydicom.dcmread(files[0], stop_before_pixels=True)
            voxels = int(header.Rows) * int(header.Columns) * len(files)
        else:
            voxels = int(np.prod(check_nifti(item)[0]))
        if output_dir is not None:
            stem = Path(item).name.split(".")[0] if Path(item).is_file() else Path(item).name
            done = Path(output_dir) / f"{stem}_{output_postfix}.nii.gz"
            if done.is_file():
                logger.info(f"{item}: skipped, {done} exists")
                continue
        if available is not None:
            need = voxels * bytes_per_voxel
            if need > available:
                raise InputError(
                    f"{item}: needs about {need / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB available"
                )
        items.append({"image": item})
    return items
