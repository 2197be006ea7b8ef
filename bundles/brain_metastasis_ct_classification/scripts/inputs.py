"""Patient discovery and input checks with one-line errors that name the file or folder and the problem.

A patient is a folder holding one DICOM CT series, or a NIfTI file. Inference takes one patient or a folder of
patients; every patient is checked before any work starts, so a wrong modality, a folder mixing series, an empty or
truncated input fails at once, naming it, and nothing is written.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "InputError",
    "NIFTI_SUFFIXES",
    "check_dicom_series",
    "check_nifti",
    "check_patient",
    "find_patients",
    "inference_datalist",
    "is_nifti",
    "patient_id_of",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: loose files a folder of patients may hold beside the patients (labels, manifests, notes).
SIDE_FILE_SUFFIXES = (".csv", ".json", ".txt", ".md", ".tsv", ".yaml", ".yml")


class InputError(ValueError):
    """Bad input: the message is one line that names the file and the problem."""


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a NIfTI suffix (``.nii`` or ``.nii.gz``)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def patient_id_of(path: str | os.PathLike) -> str:
    """The patient id of an input: the folder name of a DICOM series, the file name of a NIfTI without suffix."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_nifti(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """Check that a NIfTI file is a complete 3D volume, without reading its voxels.

    Returns:
        the spatial shape and the affine.

    Raises:
        InputError: missing, truncated, corrupt, or not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        expected = int(img.dataobj.offset) + int(np.prod(shape)) * img.header.get_data_dtype().itemsize
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
    if len(spatial) != 3:
        raise InputError(f"{path}: expected a 3D CT volume, got shape {shape}")
    return spatial, np.asarray(img.affine)


def _looks_like_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def check_dicom_series(folder: str | os.PathLike, modality: str | None = "CT", min_slices: int = 2) -> list[Path]:
    """Check a folder holding exactly one DICOM series of ``modality`` and return its files.

    Every file's header is read (not its pixels). Files that are not DICOM (a README, a thumbnail) are ignored, as
    ITK ignores them.

    Raises:
        InputError: empty folder, no DICOM files, an unreadable or truncated file, several series, another modality,
            fewer than ``min_slices`` slices, or slices of different sizes.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"{folder}: empty folder, no DICOM series")
    series: dict[str, list[Path]] = {}
    modalities: set[str] = set()
    sizes: set[tuple[int, int]] = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, defer_size=1024)  # header only: the pixel data stay on disk
        except InvalidDicomError:
            continue
        except Exception as err:
            raise InputError(f"{f}: unreadable DICOM file ({type(err).__name__}: {err})") from err
        if getattr(ds, "Rows", None) is None:
            continue  # not an image (a DICOMDIR, a structured report)
        _check_pixel_data(f, ds)
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(f)
        modalities.add(str(ds.get("Modality", "")))
        sizes.add((int(ds.Rows), int(ds.Columns)))
    if not series:
        raise InputError(f"{folder}: no DICOM image files found")
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(v)} files)" for uid, v in series.items())
        raise InputError(f"{folder}: mixes {len(series)} DICOM series ({counts}); give one series per patient folder")
    if modality is not None and modalities != {modality}:
        raise InputError(f"{folder}: DICOM modality {', '.join(sorted(modalities))} is not {modality}")
    if len(sizes) > 1:
        raise InputError(f"{folder}: slices of different sizes {sorted(sizes)}")
    found = next(iter(series.values()))
    if len(found) < min_slices:
        raise InputError(f"{folder}: {len(found)} slice(s); a head CT series needs at least {min_slices}")
    return found


def _check_pixel_data(path: Path, ds) -> None:
    """A slice must carry its pixel data in full: the deferred element must end within the file."""
    try:
        elem = ds.get_item(0x7FE00010)
    except Exception as err:
        raise InputError(f"{path}: unreadable pixel data ({type(err).__name__}: {err})") from err
    if elem is None:
        raise InputError(f"{path}: DICOM image without pixel data")
    length, tell = getattr(elem, "length", None), getattr(elem, "value_tell", None)
    if length is not None and tell is not None and length != 0xFFFFFFFF:  # deferred: check it fits in the file
        size = path.stat().st_size
        if tell + length > size:
            raise InputError(f"{path}: truncated pixel data ({size - tell} of {length} bytes)")
        return
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    value = getattr(elem, "value", None)
    if syntax is None or syntax.is_compressed or not isinstance(value, bytes | bytearray):
        return  # encapsulated (compressed) data: the decoder checks it
    bits = int(ds.get("BitsAllocated", 16))
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("NumberOfFrames", 1))
    expected = expected * bits // 8
    if len(value) < expected:
        raise InputError(f"{path}: truncated pixel data ({len(value)} of {expected} bytes)")


def check_patient(path: str | os.PathLike, modality: str | None = "CT") -> str:
    """Check one patient input (a DICOM series folder or a NIfTI file) and return its path as a string."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        if is_nifti(path):
            check_nifti(path)
            return str(path)
        raise InputError(f"{path}: not a DICOM series folder or a NIfTI file (.nii, .nii.gz)")
    check_dicom_series(path, modality=modality)
    return str(path)


def find_patients(path: str | os.PathLike) -> list[str]:
    """The patients under ``path``: ``path`` itself (a series folder or a NIfTI file) or each entry of a folder.

    A folder that directly holds DICOM files is one patient. Otherwise it is a folder of patients: every subfolder
    must be a DICOM series and every NIfTI file is a patient; side files (``.csv``, ``.json``, ...) are ignored, and
    any other file is an error, so nothing is skipped silently.

    Raises:
        InputError: a missing path, an empty folder, or an entry that is not a patient (one line naming it).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return [str(path)]
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    if any(_looks_like_dicom(p) for p in files):
        return [str(path)]
    patients = []
    for p in entries:
        if p.is_dir() or is_nifti(p):
            patients.append(str(p))
        elif p.name.lower().endswith(SIDE_FILE_SUFFIXES):
            logger.info(f"{p}: side file, not a patient")
        else:
            raise InputError(f"{p}: neither a DICOM series folder nor a NIfTI file, in the folder of patients {path}")
    if not patients:
        raise InputError(f"{path}: empty folder, no DICOM series or NIfTI files")
    return patients


def inference_datalist(path: str | os.PathLike, modality: str | None = "CT") -> list[dict[str, str]]:
    """Datalist ``[{"image", "source", "patient_id"}]`` for one patient or a folder of patients, all checked first.

    Raises:
        InputError: the first bad patient, named, before anything is read or written.
    """
    items = [
        {"image": checked, "source": checked, "patient_id": patient_id_of(p)}
        for p in find_patients(path)
        for checked in [check_patient(p, modality)]
    ]
    ids = [item["patient_id"] for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"{path}: several inputs share the patient id(s) {', '.join(duplicates)}")
    return items
