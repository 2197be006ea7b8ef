"""A dictionary transform that stops an image/label pair on different grids with a one-line error."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from .inputs import InputError

__all__ = ["SameGridd"]


class SameGridd(MapTransform):
    """Check that ``label`` has the shape and affine of ``image`` (after both were oriented the same way).

    Args:
        keys: the image key, then the label key.
        atol: affine tolerance as a share of the smallest voxel size.

    Raises:
        InputError: naming the label file, the image file and the mismatch.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), atol: float = 0.01) -> None:
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"SameGridd needs two keys (image, label), got {self.keys}")
        self.atol = atol

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image, label = (d[k] for k in self.keys)
        names = [
            str(getattr(x, "meta", {}).get("filename_or_obj", k))
            for x, k in zip((image, label), self.keys, strict=True)
        ]
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise InputError(
                f"{names[1]}: label shape {tuple(label.shape[1:])} does not match image shape "
                f"{tuple(image.shape[1:])} of {names[0]}"
            )
        if hasattr(image, "affine") and hasattr(label, "affine"):
            a, b = np.asarray(image.affine, dtype=np.float64), np.asarray(label.affine, dtype=np.float64)
            spacing = float(np.linalg.norm(a[:3, :3], axis=0).min())
            if not np.allclose(a, b, atol=self.atol * spacing):
                raise InputError(f"{names[1]}: label grid (affine) does not match the grid of {names[0]}")
        return d
