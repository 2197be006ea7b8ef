"""Slices for the screen: RAS volumes shown in radiological convention, windowed, with label overlays.

Volumes are read with MONAI's ``LoadImage`` (the reader the bundles use) and turned to RAS with ``Orientation``, so
an image and the label map a bundle wrote on its grid land on the same voxels. An axial RAS slice ``a[x, y]`` is
shown as ``a.T[::-1, ::-1]``: anterior at the top and the patient's right on the viewer's left, as radiologists
read CT.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ABDOMEN_WINDOW",
    "BRAIN_WINDOW",
    "PALETTE",
    "axial",
    "display_stack",
    "display_to_voxel",
    "label_volumes_ml",
    "load_ras",
    "overlay",
    "window",
]

ABDOMEN_WINDOW = (40.0, 400.0)  # level, width (HU)
BRAIN_WINDOW = (40.0, 80.0)
#: RGB colours of label values 1.. (liver green, tumour red, spleen purple, kidneys blue/cyan, bowel orange)
PALETTE = {
    "liver": (60, 200, 80),
    "liver tumour": (230, 40, 40),
    "spleen": (170, 80, 220),
    "kidney_left": (60, 120, 240),
    "kidney_right": (40, 200, 220),
    "bowel": (245, 160, 40),
}


def load_ras(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A volume (NIfTI file or DICOM series folder) as a RAS-ordered ``(X, Y, Z)`` array and its RAS affine."""
    from monai.transforms import LoadImage, Orientation

    image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    image = Orientation(axcodes="RAS")(image)
    return np.asarray(image[0]), np.asarray(image.affine, dtype=np.float64)


def window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU to 0..255 grey values for a display window."""
    low = level - width / 2
    return (np.clip((np.asarray(values, dtype=np.float32) - low) / width, 0, 1) * 255).astype(np.uint8)


def axial(slice_ras: np.ndarray) -> np.ndarray:
    """An axial RAS slice ``(X, Y)`` in radiological display orientation ``(rows, columns)``."""
    return np.ascontiguousarray(np.asarray(slice_ras).T[::-1, ::-1])


def display_stack(volume_ras: np.ndarray) -> np.ndarray:
    """All axial slices of a RAS volume in display orientation: ``(Z, rows, columns)``."""
    return np.ascontiguousarray(np.transpose(np.asarray(volume_ras), (2, 1, 0))[:, ::-1, ::-1])


def display_to_voxel(row: int, col: int, k: int, shape: Sequence[int]) -> tuple[int, int, int]:
    """The RAS voxel ``(i, j, k)`` shown at display pixel ``(row, col)`` of slice ``k`` (inverse of :func:`axial`)."""
    nx, ny = int(shape[0]), int(shape[1])
    return nx - 1 - int(col), ny - 1 - int(row), int(k)


def overlay(grey: np.ndarray, labels: np.ndarray | None, colours: Sequence[tuple[int, int, int]], alpha=0.45):
    """RGB ``uint8`` image: grey values with label value ``v`` (1..) tinted by ``colours[v - 1]``."""
    rgb = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=-1)
    if labels is not None:
        for value, colour in enumerate(colours, start=1):
            mask = labels == value
            if mask.any():
                rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def label_volumes_ml(labels: np.ndarray, affine: np.ndarray, names: Mapping[int, str]) -> dict[str, float]:
    """Volume in millilitres of each label value, from the voxel size of ``affine``."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=max(names) + 1)
    return {name: round(float(counts[value]) * voxel_ml, 1) for value, name in names.items()}
