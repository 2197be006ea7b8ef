"""Read a chest radiograph as display intensities 0..1, whatever its DICOM encoding.

* The modality LUT is applied (``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence), so stored values
  become the values the modality meant.
* ``MONOCHROME1`` images (CR-style: the lowest value displays white) are inverted, so for every file bright means
  high attenuation: bones and mediastinum bright, lung fields dark.
* Compressed transfer syntaxes decode through pydicom's pixel handlers (JPEG 2000 via pylibjpeg-openjpeg, JPEG
  baseline/lossless and RLE via pylibjpeg, gdcm where installed).
* Intensities are normalised to 0..1 between the 0.5th and 99.5th percentiles (collimation borders and burnt-in
  markers do not set the range).

PNG and JPEG files (for example the Kaggle "chest_xray" set) are read as grey images with the same normalisation.
A file that is not a radiograph (a CT slice, an MR image), that is corrupt or truncated, or that cannot be decoded
fails with one line naming the file and the problem.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from .inputs import InputError

__all__ = ["RADIOGRAPH_MODALITIES", "DICOM_SUFFIXES", "LoadRadiographd", "check_radiograph", "read_radiograph"]

#: DICOM modalities of projection radiographs: computed and digital radiography, conventional radiographic imaging.
RADIOGRAPH_MODALITIES = ("CR", "DX", "RG", "DR")
DICOM_SUFFIXES = (".dcm", ".dicom", "")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise InputError(f"{path}: not a DICOM file ({err})") from err
    except Exception as err:  # truncated headers raise EOFError, struct.error, ...
        raise InputError(f"{path}: unreadable DICOM file ({type(err).__name__}: {err})") from err
    ended = [str(w.message).split(" in file ")[0] for w in caught if "End of file" in str(w.message)]
    if ended or len(ds) == 0:
        reason = ended[0] if ended else "no data elements"
        raise InputError(f"{path}: truncated or corrupt DICOM file ({reason})")
    modality = str(ds.get("Modality", "")).upper()
    if modality not in RADIOGRAPH_MODALITIES:
        sop = getattr(ds.get("SOPClassUID", None), "name", "unknown SOP class")
        raise InputError(
            f"{path}: DICOM modality {modality or 'missing'} ({sop}) is not a radiograph "
            f"({'/'.join(RADIOGRAPH_MODALITIES)})"
        )
    if "PixelData" not in ds:
        raise InputError(f"{path}: DICOM file has no pixel data")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames); give one radiograph per file")
    return ds


def read_radiograph(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read a radiograph file as float32 ``(rows, cols)`` display intensities in 0..1 (bright = attenuating).

    Args:
        path: a DICOM CR/DX file, or a PNG/JPEG image.

    Returns:
        the image and a dict: ``modality``, ``photometric``, ``transfer_syntax``, ``rescale`` (slope, intercept),
        ``original_shape``.

    Raises:
        InputError: missing, empty, corrupt, truncated or undecodable file, or not a radiograph (one line).
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES and not _is_dicom(path):
        return _read_plain_image(path)
    ds = _dicom_header(path)
    from pydicom.pixels import apply_modality_lut

    ts = ds.file_meta.get("TransferSyntaxUID", None)
    try:
        raw = ds.pixel_array
    except Exception as err:  # truncated data, missing decoder plugin, corrupt codestream
        name = getattr(ts, "name", str(ts))
        raise InputError(f"{path}: cannot decode the pixel data ({name}: {type(err).__name__}: {err})") from err
    if raw.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) > 1:
        raw = raw[..., :3].mean(-1)  # an RGB secondary capture of a radiograph: its grey level
    if raw.ndim != 2:
        raise InputError(f"{path}: expected a 2D radiograph, got pixel array shape {raw.shape}")
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "MONOCHROME1":
        values = float(values.max()) + float(values.min()) - values
    image = _normalise(values, path)
    info = {
        "modality": str(ds.get("Modality", "")),
        "photometric": photometric,
        "transfer_syntax": getattr(ts, "name", str(ts)),
        "rescale": (float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)),
        "original_shape": tuple(int(s) for s in raw.shape[:2]),
    }
    return image, info


def _read_plain_image(path: Path) -> tuple[np.ndarray, dict]:
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with Image.open(path) as im:
            values = (
                np.asarray(im.convert("F"), dtype=np.float32)
                if im.mode in ("I", "I;16", "F")
                else np.asarray(im.convert("L"), dtype=np.float32)
            )
    except Exception as err:
        raise InputError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err
    info = {
        "modality": "",
        "photometric": "MONOCHROME2",
        "transfer_syntax": path.suffix.lower().lstrip("."),
        "rescale": (1.0, 0.0),
        "original_shape": tuple(values.shape),
    }
    return _normalise(values, path), info


def _normalise(values: np.ndarray, path: Path) -> np.ndarray:
    lo, hi = np.percentile(values, [0.5, 99.5])
    if not hi > lo:
        raise InputError(f"{path}: blank image (all pixels {lo:g})")
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def check_radiograph(path: str | os.PathLike, decode: bool = False) -> None:
    """Check a radiograph file before a run: readable header, radiograph modality, pixel data (decoded if asked).

    Raises:
        InputError: one line naming the file and the problem.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES and not _is_dicom(path):
        if decode:
            _read_plain_image(path)
        elif not path.is_file():
            raise InputError(f"{path}: file not found")
        return
    if decode:
        read_radiograph(path)
    else:
        _dicom_header(path)


class LoadRadiographd(MapTransform):
    """Load radiograph files (DICOM CR/DX, PNG, JPEG) as ``(1, rows, cols)`` MetaTensors of 0..1 intensities.

    The MetaTensor's ``meta`` holds ``filename_or_obj`` and the reader's info (modality, photometric
    interpretation, transfer syntax, rescale, original shape).

    Args:
        keys: keys of the file paths.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            image, info = read_radiograph(path)
            meta = {"filename_or_obj": path, **{k: str(v) for k, v in info.items()}}
            d[key] = MetaTensor(image[None], meta=meta)
        return d
