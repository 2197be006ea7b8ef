"""Head CT preprocessing and class-conditional augmentation as MONAI dictionary transforms.

Deterministic, run once per patient and cached (``configs/train.json`` ``preprocessing``)::

    LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> SlabAveraged (thin slices -> slice_mm slabs)
    -> Spacingd (in-plane fov_mm / image_size, slice_mm) -> BrainMaskd (HU -50..100 + morphological clean-up)
    -> CropForegroundd(brain) + ResizeWithPadOrCropd (image_size x image_size)
    -> ScaleIntensityRanged (brain window, level 40 / width 80) -> MaskIntensityd (brain only)
    -> BrainSliceStackd (quality filter, slices stacked) -> MaskedZScored (z-score over the brain)

Random, per slice, after the cache: :class:`ClassConditionalAugmentd` (mild for positives, strong for negatives,
with :class:`RandCLAHEd`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage

from .inputs import InputError

__all__ = [
    "BrainMaskd",
    "BrainSliceStackd",
    "ClassConditionalAugmentd",
    "MaskedZScored",
    "RandCLAHEd",
    "SlabAveraged",
    "brain_mask",
    "slice_quality",
]

logger = logging.getLogger(__name__)

_INPLANE = np.zeros((3, 3, 3), dtype=bool)
_INPLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)
_CONNECT = ndimage.generate_binary_structure(3, 1)


def _source(img: Any) -> str:
    meta = getattr(img, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "input"))


def _pixdim(img: Any) -> np.ndarray:
    if isinstance(img, MetaTensor):
        return np.asarray(img.pixdim, dtype=np.float64)
    return np.ones(3)


class SlabAveraged(MapTransform):
    """Average thin slices into slabs of about ``slice_mm`` (a thick reconstruction) before resampling.

    Resampling 1 mm slices to 5 mm by interpolation would keep one slice in five and can step over a small lesion;
    a running mean over ``round(slice_mm / spacing)`` slices along the last axis keeps every slice's signal.
    Volumes whose slices are already thick enough are returned unchanged.

    Args:
        keys: image keys (channel-first ``(C, X, Y, Z)`` MetaTensors).
        slice_mm: target slice thickness in mm.
    """

    def __init__(self, keys: KeysCollection, slice_mm: float = 5.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slice_mm = float(slice_mm)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            dz = float(_pixdim(img)[2])
            size = int(round(self.slice_mm / dz)) if dz > 0 else 1
            if size <= 1:
                continue
            arr = np.asarray(img, dtype=np.float32)
            out = ndimage.uniform_filter1d(arr, size=size, axis=-1, mode="nearest")
            d[key] = convert_to_dst_type(out, img, dtype=torch.float32)[0]
        return d


def brain_mask(
    hu: np.ndarray,
    pixdim: Sequence[float],
    hu_range: Sequence[float] = (-50.0, 100.0),
    erosion_mm: float = 3.0,
    scalp_margin_mm: float = 6.0,
    max_hole_mm2: float = 300.0,
    bone_margin_mm: float = 5.5,
    bone_rim_hu: float = 60.0,
    max_hole_hu: float = 130.0,
    bone_hu: float = 150.0,
) -> np.ndarray:
    """Brain extraction from a HU volume ``(X, Y, Z)``: threshold and morphological clean-up.

    1. Voxels in ``hu_range`` (brain, CSF, lesions; not bone, not air) that lie more than ``scalp_margin_mm`` (in
       3D, in mm) from the air around the head, which removes the scalp, also where a slice cuts it tangentially.
       Dense voxels (above ``bone_rim_hu``) within ``bone_margin_mm`` (3D) of bone (> ``bone_hu``) are dropped too:
       with thick slices the skull base and the inner table leak into the next slice as 60-100 HU partial volume.
    2. In-plane erosion by ``erosion_mm`` cuts the thin bridges through the skull's foramina and gaps; the largest
       3D connected component is kept and dilated back inside the step-1 mask.
    3. Slice by slice: closing, and filling of holes up to ``max_hole_mm2`` with a mean up to ``max_hole_hu``
       (noisy dense lesion pixels just above the range), not of larger or denser ones (bone of the skull base,
       calcifications: they stay outside the brain and are blanked).

    Returns:
        a boolean mask of the same shape (empty when nothing qualifies).
    """
    lo, hi = hu_range
    px = max(float(pixdim[0]), 1e-3)
    in_range = (hu >= lo) & (hu <= hi)
    air, _ = ndimage.label(hu < -300, structure=_CONNECT)
    faces = [air[0], air[-1], air[:, 0], air[:, -1], air[:, :, 0], air[:, :, -1]]
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    outside = np.isin(air, border[border > 0])
    sampling = tuple(float(v) for v in pixdim[:3])
    inside = in_range.copy()
    if outside.any():
        inside &= ndimage.distance_transform_edt(~outside, sampling=sampling) > scalp_margin_mm
    bone = hu > bone_hu
    if bone.any():
        inside &= ~((hu > bone_rim_hu) & (ndimage.distance_transform_edt(~bone, sampling=sampling) <= bone_margin_mm))
    iterations = max(1, int(round(erosion_mm / px)))
    core = ndimage.binary_erosion(inside, structure=_INPLANE, iterations=iterations)
    labels, n = ndimage.label(core, structure=_CONNECT)
    if n == 0:
        return np.zeros_like(inside)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    mask = ndimage.binary_dilation(mask, structure=_INPLANE, iterations=iterations) & inside
    max_hole = max_hole_mm2 / (px * float(pixdim[1]))
    for k in range(mask.shape[2]):
        if not mask[:, :, k].any():
            continue
        closed = ndimage.binary_closing(mask[:, :, k], iterations=2, border_value=0) & inside[:, :, k]
        holes, n_holes = ndimage.label(ndimage.binary_fill_holes(closed) & ~closed)
        if n_holes:
            index = np.arange(1, n_holes + 1)
            hole_sizes = ndimage.sum_labels(np.ones_like(holes), holes, index)
            hole_hu = ndimage.mean(hu[:, :, k], holes, index)
            fill = index[(hole_sizes <= max_hole) & (hole_hu <= max_hole_hu)]
            closed |= np.isin(holes, fill)
        mask[:, :, k] = closed
    return mask


class BrainMaskd(MapTransform):
    """Add the brain mask of a HU image under ``mask_key`` (see :func:`brain_mask`).

    Args:
        keys: the HU image key (channel-first).
        mask_key: where to store the mask (``(1, X, Y, Z)``, same meta as the image).
        hu_range: brain threshold in HU.
        erosion_mm: in-plane erosion before the largest component, in mm.
        min_volume_ml: smallest plausible brain; a smaller mask raises (not a head CT, or no brain in the scan).

    Raises:
        InputError: when the mask is smaller than ``min_volume_ml``, naming the input.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "brain",
        hu_range: Sequence[float] = (-50.0, 100.0),
        erosion_mm: float = 3.0,
        min_volume_ml: float = 20.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.hu_range = tuple(float(v) for v in hu_range)
        self.erosion_mm = float(erosion_mm)
        self.min_volume_ml = float(min_volume_ml)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            pixdim = _pixdim(img)
            mask = brain_mask(np.asarray(img[0], dtype=np.float32), pixdim, self.hu_range, self.erosion_mm)
            volume_ml = float(mask.sum() * np.prod(pixdim)) / 1000.0
            if volume_ml < self.min_volume_ml:
                raise InputError(
                    f"{_source(img)}: no brain found ({volume_ml:.1f} mL of tissue in HU {self.hu_range}); "
                    "is this a head CT in Hounsfield units?"
                )
            d[self.mask_key] = convert_to_dst_type(mask[None], img, dtype=torch.float32)[0]
        return d


def _midline_reflection(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reflection about the brain's long (antero-posterior) axis through its centroid, as ``affine_transform`` args."""
    coords = np.argwhere(mask).astype(np.float64)
    centre = coords.mean(axis=0)
    if coords.shape[0] < 3:
        direction = np.array([0.0, 1.0])
    else:
        values, vectors = np.linalg.eigh(np.cov((coords - centre).T))
        direction = vectors[:, int(np.argmax(values))]
        if abs(direction[1]) < abs(direction[0]):  # a slice wider than long: keep the antero-posterior axis
            direction = np.array([0.0, 1.0])
    matrix = 2.0 * np.outer(direction, direction) - np.eye(2)
    return matrix, centre - matrix @ centre


def slice_quality(
    image: np.ndarray, mask: np.ndarray, smooth_px: float = 1.5, delta: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slice brain fraction, bright (window-saturated) fraction and left-right asymmetry.

    Args:
        image: windowed image ``(X, Y, Z)`` in [0, 1] (1 = the top of the window).
        mask: brain mask of the same shape.
        smooth_px: Gaussian sigma (pixels) applied before comparing the hemispheres, to ignore noise.
        delta: a pixel is asymmetric when it differs from its mirror image by more than this (window units;
            0.15 = 12 HU in the brain window, six times the smoothed noise).

    Returns:
        ``brain_fraction`` (brain area / largest brain area), ``bright_fraction`` (share of brain pixels at the top of
        the window: bone partial volume at the skull base or vertex), ``asymmetry`` (share of brain pixels, away
        from the brain's edge, that differ from their mirror image about the brain's midline by more than
        ``delta``; the midline is the brain's long axis, so a rotated head is not asymmetric; a lesion in one
        hemisphere raises it).
    """
    area = mask.sum(axis=(0, 1)).astype(np.float64)
    fraction = area / max(area.max(), 1.0)
    bright = ((image >= 0.999) & mask).sum(axis=(0, 1)) / np.maximum(area, 1.0)
    asymmetry = np.zeros(image.shape[2])
    for k in np.nonzero(area > 0)[0]:
        m = mask[:, :, k]
        sm = ndimage.gaussian_filter(image[:, :, k].astype(np.float32), smooth_px)
        matrix, offset = _midline_reflection(m)
        mirrored = ndimage.affine_transform(sm, matrix, offset=offset, order=1)
        mirrored_mask = ndimage.affine_transform(m.astype(np.float32), matrix, offset=offset, order=0) > 0.5
        both = ndimage.binary_erosion(m & mirrored_mask, iterations=3)
        if both.any():
            asymmetry[k] = float((np.abs(sm - mirrored)[both] > delta).mean())
    return fraction, bright, asymmetry


class BrainSliceStackd(MapTransform):
    """Quality filter: keep the usable axial slices and stack them as ``(S, H, W)``; record where they came from.

    A slice is poor when it holds little brain (``brain_fraction < min_brain_fraction``: skull base, vertex) or
    much window-saturated tissue inside the brain mask (``bright_fraction > max_bright_fraction``: bone partial
    volume). A poor slice is still kept when it is clearly asymmetric (``asymmetry >= min_asymmetry`` with at
    least ``min_asymmetric_fraction`` brain and at most three times the bright limit), since a lesion makes a
    slice asymmetric (see :func:`slice_quality`). If no slice qualifies, the
    ``min_slices`` slices with the most brain are kept.

    Outputs (besides ``image`` as a plain ``(S, H, W)`` float tensor and ``mask_key`` the same way):
    ``slice_index`` (the slice's index in the input series, along its third voxel axis), ``slice_z`` (the
    slice's patient z in mm), ``brain_fraction``, ``asymmetry``.

    Args:
        keys: the windowed image key (``(1, X, Y, Z)`` in [0, 1], brain only).
        mask_key: the brain mask key.
        min_brain_fraction: minimum brain area relative to the slice with the most brain.
        max_bright_fraction: maximum share of window-saturated brain pixels.
        min_asymmetry: share of asymmetric brain pixels that keeps a poor slice.
        min_asymmetric_fraction: minimum brain fraction of an asymmetric poor slice.
        min_slices: slices kept at least.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "brain",
        min_brain_fraction: float = 0.25,
        max_bright_fraction: float = 0.05,
        min_asymmetry: float = 0.1,
        min_asymmetric_fraction: float = 0.1,
        min_slices: int = 1,
    ) -> None:
        super().__init__(keys)
        self.mask_key = mask_key
        self.min_brain_fraction = float(min_brain_fraction)
        self.max_bright_fraction = float(max_bright_fraction)
        self.min_asymmetry = float(min_asymmetry)
        self.min_asymmetric_fraction = float(min_asymmetric_fraction)
        self.min_slices = int(min_slices)

    def select(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the kept slices along the last axis, and every slice's brain fraction and asymmetry."""
        fraction, bright, asymmetry = slice_quality(image, mask)
        poor = (fraction < self.min_brain_fraction) | (bright > self.max_bright_fraction)
        rescued = (
            (asymmetry >= self.min_asymmetry)
            & (fraction >= self.min_asymmetric_fraction)
            & (bright <= 3 * self.max_bright_fraction)
        )
        keep = np.nonzero((~poor | rescued) & (fraction > 0))[0]
        if keep.size < self.min_slices:
            keep = np.sort(np.argsort(-fraction, kind="stable")[: self.min_slices])
        return keep, fraction, asymmetry

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            image = np.asarray(img[0], dtype=np.float32)
            mask = np.asarray(d[self.mask_key][0]) > 0.5
            keep, fraction, asymmetry = self.select(image, mask)
            if keep.size < image.shape[2]:
                logger.debug(f"{_source(img)}: kept {keep.size} of {image.shape[2]} slices")
            index, z = self._origin(img, image.shape, keep)
            d[key] = torch.from_numpy(np.ascontiguousarray(image[:, :, keep].transpose(2, 0, 1)))
            d[self.mask_key] = torch.from_numpy(np.ascontiguousarray(mask[:, :, keep].transpose(2, 0, 1)))
            d["slice_index"] = torch.as_tensor(index, dtype=torch.long)
            d["slice_z"] = torch.as_tensor(z, dtype=torch.float32)
            d["brain_fraction"] = torch.as_tensor(fraction[keep], dtype=torch.float32)
            d["asymmetry"] = torch.as_tensor(asymmetry[keep], dtype=torch.float32)
        return d

    @staticmethod
    def _origin(img: Any, shape: Sequence[int], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index in the input series and patient z (mm) of the centre of each kept slice."""
        if not isinstance(img, MetaTensor):
            return keep.astype(np.int64), keep.astype(np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
        original = np.asarray(img.meta.get("original_affine", affine), dtype=np.float64)
        centre = np.stack(
            [np.full(keep.size, (shape[0] - 1) / 2), np.full(keep.size, (shape[1] - 1) / 2), keep, np.ones(keep.size)]
        )
        world = affine @ centre
        voxel = np.linalg.inv(original) @ world
        return np.rint(voxel[2]).astype(np.int64), world[2].astype(np.float32)


class MaskedZScored(MapTransform):
    """Z-score an image over the voxels of a mask (the brain); voxels outside the mask become 0.

    Args:
        keys: image keys.
        mask_key: the mask (same shape as the image).
        eps: lower bound of the standard deviation.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "brain", eps: float = 1e-6) -> None:
        super().__init__(keys)
        self.mask_key = mask_key
        self.eps = float(eps)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key], dtype=torch.float32)
            mask = torch.as_tensor(d[self.mask_key]) > 0.5
            values = img[mask]
            mean = values.mean() if values.numel() else torch.tensor(0.0)
            std = values.std() if values.numel() > 1 else torch.tensor(1.0)
            d[key] = torch.where(mask, (img - mean) / torch.clamp(std, min=self.eps), torch.zeros_like(img))
        return d


class RandCLAHEd(RandomizableTransform, MapTransform):
    """Contrast-limited adaptive histogram equalisation (scikit-image) with probability ``prob``.

    Each channel is rescaled to [0, 1] from its own range, equalised, and mapped back to that range, so it also
    works on z-scored images.

    Args:
        keys: image keys (``(C, H, W)``).
        prob: probability of applying it.
        clip_limit: CLAHE clip limit, drawn uniformly from this range.
        kernel_size: CLAHE tile size in pixels (default 1/8 of the image, scikit-image's default).
        nbins: histogram bins.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        clip_limit: Sequence[float] = (0.01, 0.03),
        kernel_size: int | None = None,
        nbins: int = 256,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.clip_limit = (float(clip_limit[0]), float(clip_limit[-1]))
        self.kernel_size = kernel_size
        self.nbins = int(nbins)
        self._clip = self.clip_limit[0]

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._clip = float(self.R.uniform(*self.clip_limit))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from skimage.exposure import equalize_adapthist

        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            arr = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float64)
            out = np.empty_like(arr)
            for c in range(arr.shape[0]):
                lo, hi = float(arr[c].min()), float(arr[c].max())
                if hi - lo < 1e-8:
                    out[c] = arr[c]
                    continue
                eq = equalize_adapthist(
                    (arr[c] - lo) / (hi - lo), kernel_size=self.kernel_size, clip_limit=self._clip, nbins=self.nbins
                )
                out[c] = eq * (hi - lo) + lo
            d[key] = convert_to_dst_type(out, img, dtype=torch.float32)[0]
        return d


class ClassConditionalAugmentd(RandomizableTransform, MapTransform):
    """Apply one chain of random transforms to positive samples and another to negative ones.

    The label is read from ``label_key`` of the same sample (a slice carries its patient's label), so the two
    classes get augmentations of different strength, as in the brain-metastasis recipe: positives mild (with
    probability 0.7: gamma 0.95-1.05, gentle blur), negatives strong (with probability 0.5: gamma 0.9-1.1, CLAHE,
    sharpening).

    Args:
        keys: image keys (informational: the chains name their own keys).
        label_key: key of the 0/1 label.
        positive: transforms for samples with label 1.
        negative: transforms for samples with label 0.
        positive_prob: probability that a positive sample goes through ``positive``.
        negative_prob: probability that a negative sample goes through ``negative``.
        common: transforms for every sample, applied after the class-specific chain.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_key: str = "label",
        positive: Sequence[Callable] = (),
        negative: Sequence[Callable] = (),
        positive_prob: float = 0.7,
        negative_prob: float = 0.5,
        common: Sequence[Callable] = (),
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        self.label_key = label_key
        self.positive = Compose(list(positive))
        self.negative = Compose(list(negative))
        self.common = Compose(list(common))
        self.positive_prob = float(positive_prob)
        self.negative_prob = float(negative_prob)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        for i, chain in enumerate((self.positive, self.negative, self.common)):
            chain.set_random_state(seed=None if seed is None else seed + i + 1, state=state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        positive = float(torch.as_tensor(d[self.label_key]).float().max()) > 0.5
        chain, prob = (self.positive, self.positive_prob) if positive else (self.negative, self.negative_prob)
        if self.R.rand() < prob:
            d = chain(d)
        return self.common(d)
