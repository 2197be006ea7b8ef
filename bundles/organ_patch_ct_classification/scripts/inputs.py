"""Inference inputs with one-line errors: a patch image, a folder of them, or a CT volume and a click position.

A click ``[i, j, k]`` is a voxel index of the CT file as stored (what ITK-SNAP or 3D Slicer show as voxel
coordinates). The 64x64 patch around it is cut from axial slice ``k`` exactly as the training patches were
(``monai_apps.data.organ_patches``): RAS orientation, optional in-plane resampling, HU window, radiological display
orientation (anterior up, patient's right on the image's left). It is written as a PNG beside the predictions, so
users see what was classified, and then classified like any other patch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "InputError",
    "check_image",
    "click_patch",
    "inference_datalist",
    "window_to_uint8",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class InputError(ValueError):
    """Bad input: the message is one line that names the file and the problem."""


def check_image(path: str | os.PathLike) -> None:
    """Check that ``path`` is a complete, readable 2D image (decoded in full: truncated files fail).

    Raises:
        InputError: naming the file and the problem.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as err:  # PIL raises many types for broken files
        raise InputError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def window_to_uint8(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Map HU in ``[level - width/2, level + width/2]`` linearly to 0..255 (uint8), clipping outside."""
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def click_patch(
    ct_path: str | os.PathLike,
    click: Sequence[int],
    patch_size: int = 64,
    window: Sequence[float] = (40.0, 400.0),
    spacing: float | None = None,
) -> np.ndarray:
    """The uint8 ``patch_size`` x ``patch_size`` patch centred on voxel ``click`` of a CT, in display orientation.

    Args:
        ct_path: a NIfTI CT volume.
        click: voxel index ``[i, j, k]`` in the file's own voxel order.
        patch_size: patch side in pixels.
        window: HU (level, width).
        spacing: in-plane resampling in mm used when the training patches were prepared (``None``: native).

    Raises:
        InputError: unreadable CT, not 3D, or a click outside the volume.
    """
    import nibabel as nib

    path = Path(ct_path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:
        raise InputError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D CT volume, got shape {data.shape}")
    ijk = np.asarray([int(v) for v in click])
    if ijk.shape != (3,) or np.any(ijk < 0) or np.any(ijk >= data.shape):
        raise InputError(f"{path}: click {list(click)} is outside the volume of shape {data.shape}")
    ornt = nib.orientations.io_orientation(img.affine)
    to_ras = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    ras = nib.orientations.apply_orientation(data, to_ras)
    # the clicked voxel's index in the RAS array: axis ornt[i, 0] of the output, flipped when ornt[i, 1] < 0
    idx = np.zeros(3, dtype=int)
    for i in range(3):
        out_axis, flip = int(ornt[i, 0]), ornt[i, 1] < 0
        idx[out_axis] = data.shape[i] - 1 - ijk[i] if flip else ijk[i]
    plane = np.asarray(ras[:, :, idx[2]], dtype=np.float32)
    cx, cy = float(idx[0]), float(idx[1])
    if spacing is not None:
        from scipy.ndimage import zoom

        vox = np.asarray(nib.affines.voxel_sizes(img.affine))[np.argsort(ornt[:, 0])]
        factors = (vox[0] / spacing, vox[1] / spacing)
        if abs(factors[0] - 1) > 1e-3 or abs(factors[1] - 1) > 1e-3:
            plane = zoom(plane, factors, order=1, mode="nearest", grid_mode=True)
            # voxel centres map as (i + 0.5) * f - 0.5 with grid_mode=True
            cx, cy = (cx + 0.5) * plane.shape[0] / ras.shape[0] - 0.5, (cy + 0.5) * plane.shape[1] / ras.shape[1] - 0.5
    half = patch_size // 2
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    padded = np.full((patch_size, patch_size), -1024.0, dtype=np.float32)  # air outside the scan
    xs, ys = (
        slice(max(x0, 0), min(x0 + patch_size, plane.shape[0])),
        slice(max(y0, 0), min(y0 + patch_size, plane.shape[1])),
    )
    padded[xs.start - x0 : xs.stop - x0, ys.start - y0 : ys.stop - y0] = plane[xs, ys]
    patch = window_to_uint8(padded, float(window[0]), float(window[1]))
    return np.ascontiguousarray(patch.T[::-1, ::-1])  # display: anterior up, patient's right on the left


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part.png")
    try:
        Image.fromarray(image, mode="L").save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def inference_datalist(
    input_path: str | os.PathLike,
    click: Sequence[int] | None = None,
    output_dir: str | os.PathLike = "eval",
    patch_size: int = 64,
    window: Sequence[float] = (40.0, 400.0),
    spacing: float | None = None,
) -> list[dict]:
    """Datalist for inference: one patch image, every image under a folder (recursively), or a CT click.

    Args:
        input_path: an image file, a folder of images, or a NIfTI CT (with ``click``).
        click: voxel ``[i, j, k]`` of the CT; its patch is written to ``output_dir`` and classified.
        output_dir: where the click patch PNG goes.
        patch_size: patch side in pixels (click only).
        window: HU (level, width) (click only).
        spacing: in-plane resampling in mm used in preparation (click only).

    Raises:
        InputError: missing or unreadable input, a folder without images, a CT without a click, or a click
            outside the CT.
    """
    path = Path(input_path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    is_nifti = path.name.lower().endswith(NIFTI_SUFFIXES)
    if click is not None and len(click) > 0:
        if not is_nifti:
            raise InputError(f"{path}: a click position needs a NIfTI CT volume (.nii, .nii.gz)")
        patch = click_patch(path, click, patch_size, window, spacing)
        suffix = max((s for s in NIFTI_SUFFIXES if path.name.lower().endswith(s)), key=len)
        stem = path.name[: -len(suffix)]  # keeps dots inside the name (e.g. a series UID)
        out = Path(output_dir) / f"{stem}_click_{'_'.join(str(int(v)) for v in click)}.png"
        _write_png(out, patch)
        return [{"image": str(out), "source": str(path), "click": " ".join(str(int(v)) for v in click)}]
    if is_nifti:
        raise InputError(f"{path}: a CT volume needs a click position, e.g. --click '[256,256,40]'")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{path}: not a patch image ({', '.join(IMAGE_SUFFIXES)}) or a NIfTI CT")
        check_image(path)
        return [{"image": str(path)}]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise InputError(f"{path}: folder holds no patch images ({', '.join(IMAGE_SUFFIXES)})")
    for f in files:
        check_image(f)
    return [{"image": str(f)} for f in files]
