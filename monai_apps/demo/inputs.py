"""Uploads for the demo: recognise a file by its content, unpack zipped DICOM series safely, stage in private folders.

Nothing here opens a path a user typed: every input is a file the browser uploaded, copied (or unpacked) into a
private temporary folder (mode 0700) that is deleted when the request is done. A zip archive is unpacked with
limits on its number of files and on its uncompressed size (a "zip bomb" is refused), links are refused, and every
member gets a name of ours, so no member can land outside the folder whatever its path in the archive.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DemoInputError",
    "MAX_ZIP_FILES",
    "MAX_ZIP_BYTES",
    "Staged",
    "private_dir",
    "sniff",
    "stage_upload",
    "unzip_dicom_series",
]

#: most files a zipped DICOM series may hold
MAX_ZIP_FILES = 5000
#: most bytes a zipped DICOM series may unpack to
MAX_ZIP_BYTES = 4 * 1024**3
#: largest uncompressed/compressed ratio of a member (DICOM compresses a few times; a zip bomb by thousands)
MAX_ZIP_RATIO = 200


class DemoInputError(ValueError):
    """A wrong or corrupt upload; the message is one line naming the uploaded file and the problem."""


@dataclass
class Staged:
    """An upload staged for a bundle.

    Attributes:
        kind: ``nifti``, ``dicom_series``, ``dicom_file`` or ``image``.
        path: the staged file or series folder (inside the private folder).
        name: the uploaded file's name (for messages and output names).
    """

    kind: str
    path: Path
    name: str


@contextlib.contextmanager
def private_dir(prefix: str = "monai_demo_") -> Iterator[Path]:
    """A temporary folder only this user can read, removed with everything in it when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, 0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sniff(path: str | os.PathLike) -> str:
    """What a file is, from its first bytes: ``nifti``, ``zip``, ``dicom``, ``png``, ``jpeg`` or ``unknown``."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(1024)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(348)
        except (OSError, EOFError):
            return "unknown"
        return "nifti" if _is_nifti_header(inner) else "unknown"
    if _is_nifti_header(head):
        return "nifti"
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return "unknown"


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 348:
        return False
    little, big = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    return (little == 348 or big == 348) and head[344:347] in (b"n+1", b"ni1")


def _check_nifti(path: Path, name: str) -> None:
    """Read the whole NIfTI: a truncated or corrupt file fails here, with the uploaded name."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # nibabel and gzip raise many types
        raise DemoInputError(f"{name}: truncated or corrupt NIfTI file ({type(err).__name__})") from err
    spatial = [s for s in data.shape if s > 1]
    if len(data.shape) < 2 or len(spatial) > 3 or data.ndim > 4:
        raise DemoInputError(f"{name}: expected a 3D volume, got shape {tuple(data.shape)}")


def unzip_dicom_series(archive: str | os.PathLike, dest: Path, name: str | None = None, modality: str | None = "CT"):
    """Unpack a zipped DICOM series into ``dest`` (flat, our own file names) and check it is one series.

    Args:
        archive: the zip file.
        dest: the folder to fill (created).
        name: the uploaded file's name, for messages.
        modality: the Modality every instance must have (``None``: any).

    Returns:
        ``dest``, holding only the series' instances.

    Raises:
        DemoInputError: not a zip, a link or an oversized member, too many files, no DICOM, several series, or
            another modality.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    name = name or Path(archive).name
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DemoInputError(f"{name}: not a readable zip archive") from err
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_FILES:
            raise DemoInputError(f"{name}: {len(members)} files; at most {MAX_ZIP_FILES} are accepted")
        total = 0
        for m in members:
            if stat.S_ISLNK(m.external_attr >> 16):
                raise DemoInputError(f"{name}: holds a symbolic link ({m.filename}); links are refused")
            total += m.file_size
            if total > MAX_ZIP_BYTES:
                raise DemoInputError(f"{name}: unpacks to more than {MAX_ZIP_BYTES // 1024**2} MB")
            if m.compress_size and m.file_size / m.compress_size > MAX_ZIP_RATIO and m.file_size > 1024**2:
                raise DemoInputError(f"{name}: member {m.filename} is compressed {m.file_size // m.compress_size}:1")
        series: dict[str, list[Path]] = {}
        modalities: set[str] = set()
        for i, m in enumerate(members):
            base = Path(m.filename).name
            if base.startswith(".") or "__MACOSX" in m.filename:
                continue
            target = dest / f"{i:05d}.dcm"
            try:
                with zf.open(m) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise DemoInputError(f"{name}: corrupt archive member {m.filename} ({err})") from err
            try:
                ds = pydicom.dcmread(target, stop_before_pixels=True)
            except InvalidDicomError:
                target.unlink()
                continue
            except Exception as err:
                raise DemoInputError(
                    f"{name}: {m.filename} is an unreadable DICOM file ({type(err).__name__})"
                ) from err
            if "Rows" not in ds:
                target.unlink()  # not an image (a DICOMDIR, a report)
                continue
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(target)
            modalities.add(str(ds.get("Modality", "")))
    if not series:
        raise DemoInputError(f"{name}: no DICOM images in the archive")
    if len(series) > 1:
        raise DemoInputError(f"{name}: holds {len(series)} DICOM series; zip one series")
    if modality is not None and modalities != {modality}:
        raise DemoInputError(f"{name}: DICOM modality {', '.join(sorted(modalities))} is not {modality}")
    return dest


def stage_upload(
    upload: str | os.PathLike | None,
    workdir: Path,
    accept: tuple[str, ...] = ("nifti", "dicom_series"),
    modality: str | None = "CT",
) -> Staged:
    """Copy or unpack an uploaded file into ``workdir`` after checking what it is.

    Args:
        upload: the uploaded file (a path in the web server's private upload cache; see ``monai_apps.demo.app``).
        workdir: a private folder (see :func:`private_dir`).
        accept: kinds this tab takes: ``nifti``, ``dicom_series`` (a zip), ``dicom_file``, ``image`` (PNG/JPEG).
        modality: required DICOM Modality (``None``: any).

    Raises:
        DemoInputError: nothing uploaded, or a file of another kind, or a corrupt one.
    """
    if upload is None or not str(upload):
        raise DemoInputError("no file uploaded")
    upload = Path(upload)
    name = upload.name
    if not upload.is_file():
        raise DemoInputError(f"{name}: upload not found (was it removed?)")
    kind = sniff(upload)
    if kind == "nifti" and "nifti" in accept:
        target = workdir / ("input.nii.gz" if _gzipped(upload) else "input.nii")
        shutil.copyfile(upload, target)
        _check_nifti(target, name)
        return Staged("nifti", target, name)
    if kind == "zip" and "dicom_series" in accept:
        return Staged("dicom_series", unzip_dicom_series(upload, workdir / "series", name, modality), name)
    if kind == "dicom" and "dicom_file" in accept:
        target = workdir / "input.dcm"
        shutil.copyfile(upload, target)
        return Staged("dicom_file", target, name)
    if kind in ("png", "jpeg") and "image" in accept:
        target = workdir / f"input.{'png' if kind == 'png' else 'jpg'}"
        shutil.copyfile(upload, target)
        return Staged("image", target, name)
    wanted = {
        "nifti": "a NIfTI volume (.nii, .nii.gz)",
        "dicom_series": "a zipped DICOM series (.zip)",
        "dicom_file": "a DICOM file (.dcm)",
        "image": "a PNG or JPEG image",
    }
    hint = {
        "dicom": "a single DICOM file; zip the whole series",
        "zip": "a zip archive",
        "nifti": "a NIfTI volume",
        "png": "an image",
        "jpeg": "an image",
    }.get(kind, "an unrecognised or corrupt file")
    raise DemoInputError(f"{name}: {hint}; this tab takes {' or '.join(wanted[a] for a in accept)}")


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"
