"""Put a label map predicted on the model's grid back onto the input image's grid, cheaply.

``Invertd`` undoes the preprocessing chain exactly, but inverting ``Spacingd`` builds a dense sampling grid over
the full-resolution output: for a 512 x 512 x 200 CT that is about 2 GB and several seconds even for a label map.
When the two grids are axis-aligned (the usual case: the model grid is the input grid reoriented, resampled and
cropped), nearest-neighbour resampling is separable and needs only one index vector per axis; this module does
that, with ``SpatialResample`` (MONAI's dense resampler) as the fallback for oblique inputs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SpatialResample

__all__ = ["ResampleToInputd", "nearest_to_grid"]


def nearest_to_grid(label: MetaTensor, affine: np.ndarray, shape: tuple[int, ...], atol: float = 1e-4) -> MetaTensor:
    """Nearest-neighbour resampling of a channel-first label map onto the grid ``(affine, shape)``.

    Voxels of the target grid outside the label's grid get 0.

    Args:
        label: ``(C, X, Y, Z)`` MetaTensor carrying its affine.
        affine: 4x4 voxel-to-world affine of the target grid.
        shape: spatial shape of the target grid.
        atol: tolerance for deciding that the two grids are axis-aligned.

    Returns:
        a MetaTensor of ``label``'s dtype on the target grid, with ``affine`` as its affine.
    """
    src_affine = np.asarray(label.affine, dtype=np.float64)
    dst_affine = np.asarray(affine, dtype=np.float64)
    mapping = np.linalg.solve(src_affine, dst_affine)  # target voxel index -> source voxel index
    linear = mapping[:3, :3]
    axes = np.argmax(np.abs(linear), axis=0)  # the source axis fed by each target axis
    aligned = sorted(axes.tolist()) == [0, 1, 2] and np.allclose(linear - _only(linear, axes), 0, atol=atol)
    if not aligned:
        resampler = SpatialResample(mode="nearest", padding_mode="zeros")
        return resampler(label, dst_affine=torch.as_tensor(dst_affine), spatial_size=tuple(int(s) for s in shape))
    data = label.as_tensor() if isinstance(label, MetaTensor) else torch.as_tensor(label)
    src_shape = data.shape[1:]
    index, valid = [], []
    for t in range(3):
        s = int(axes[t])
        idx = np.floor(linear[s, t] * np.arange(shape[t]) + mapping[s, 3] + 0.5).astype(np.int64)
        ok = (idx >= 0) & (idx < src_shape[s])
        index.append(torch.as_tensor(idx[ok]))
        valid.append(torch.as_tensor(np.nonzero(ok)[0]))
    moved = data.permute(0, *(int(a) + 1 for a in axes))  # source axes in target order
    out = torch.zeros((data.shape[0], *[int(s) for s in shape]), dtype=data.dtype)
    if all(len(i) for i in index):
        block = moved[:, index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]]
        out[:, valid[0][:, None, None], valid[1][None, :, None], valid[2][None, None, :]] = block
    meta = {k: v for k, v in label.meta.items() if k != "affine"}
    return MetaTensor(out, affine=torch.as_tensor(dst_affine), meta=meta)


def _only(linear: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """``linear`` with everything zeroed except the entry ``(axes[t], t)`` of each column."""
    kept = np.zeros_like(linear)
    cols = np.arange(3)
    kept[axes, cols] = linear[axes, cols]
    return kept


class ResampleToInputd(MapTransform):
    """Resample label maps (nearest) onto the grid of the loaded input image.

    The input grid is read from the metadata of ``ref_key`` (``original_affine`` and ``spatial_shape``, which
    ``LoadImaged`` records), so this undoes orientation, spacing and cropping at once.

    Args:
        keys: label maps on the model's grid (channel first, MetaTensors).
        ref_key: the preprocessed image whose metadata describe the input grid.
        allow_missing_keys: don't raise when a key is missing.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        meta = d[self.ref_key].meta
        affine = np.asarray(meta["original_affine"], dtype=np.float64)
        shape = tuple(int(s) for s in np.asarray(meta["spatial_shape"]).tolist())
        for key in self.key_iterator(d):
            d[key] = nearest_to_grid(d[key], affine, shape)
        return d
