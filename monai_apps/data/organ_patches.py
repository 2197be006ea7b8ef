"""Organ patches from TotalSegmentator outputs: combined label maps, windowed axial slices, pure 64x64 patches.

The pipeline, one command (``python -m monai_apps prepare_organ_patches``):

1. **Read** every subject folder as TotalSegmentator writes it: ``ct.nii.gz`` and ``segmentations/<name>.nii.gz``
   (one binary mask per class of the ``total`` task), or an existing multi-label ``combined.nii.gz`` (label ids of
   ``totalsegmentator.map_to_binary.class_map["total"]``; a label map in TotalSegmentator's NIfTI extension header,
   as ``--ml`` writes it, is honoured).
2. **Combine** the masks into ``<subject>/combined.nii.gz`` (uint8, ``total`` ids, TotalSegmentator's label-map
   header), written once and reused while it is newer than the masks.
3. **Window** the CT (level 40, width 400 HU by default) to 0-255 and cut **axial slices** in RAS orientation.
4. **Select patches** on a sliding window (64x64, stride 16) without a Python loop over windows: the label map is
   summed over ``gcd(patch, stride)``-sized blocks per class, and 2D cumulative sums over the block grid give, for
   every window of every slice at once, how many pixels each organ class and all labels cover. A window is kept
   when one class covers more than ``purity`` of its labelled pixels (95 % by default) and labelled pixels fill
   at least ``min_fill`` of it (90 % by default): a kept "liver" patch is at least 85.5 % liver.
5. **Write** class folders of PNGs, split **by subject** into ``train``/``val``/``test`` (so no subject is on both
   sides), plus ``manifest.csv`` (subject, slice, position, purity, fill of every patch) and ``summary.json``.
6. **Balance** to a target count per class (500 by default): large classes are undersampled, small ones topped
   up with augmented copies (rotation, mirroring, brightness; MONAI transforms). Held-out splits are only
   undersampled, never augmented.

Classes are groups of TotalSegmentator names (:data:`ORGAN_CLASSES`). The default groups are those whose axial
cross-section is large enough for 64x64 patches at 95 % purity at the usual 0.6-0.9 mm in-plane spacing of
abdominal CT: liver, kidney (left + right), lung (all lobes) and muscle (autochthon, iliopsoas, gluteus). Spleen,
stomach, pancreas and the aorta rarely or never fill a 64x64 window purely and are left out; pass ``classes`` to
choose others. A subject that lacks some organs contributes the ones it has (the summary lists what is missing).

Patches are stored in radiological display orientation (anterior up, patient's right on the image's left), the
orientation in which the bundle's inference cuts the patch around a click on a CT slice.

Example::

    python -m monai_apps generate --layout totalsegmentator --out data/ts --n_cases 10
    python -m monai_apps prepare_organ_patches data/ts data/organ_patches
    python -m monai_apps bench_organ_patches    # patches per second on a 512 x 512 x 200 volume
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from totalsegmentator.map_to_binary import class_map
from tqdm import tqdm

from .writers import atomic_path, write_json

__all__ = [
    "ORGAN_CLASSES",
    "TS_TOTAL",
    "OrganPatchError",
    "PatchSet",
    "Subject",
    "balance_patches",
    "bench_organ_patches",
    "combine_masks",
    "count_windows",
    "extract_patches",
    "find_subjects",
    "prepare_organ_patches",
    "read_subject",
    "window_to_uint8",
]

logger = logging.getLogger(__name__)

#: TotalSegmentator ``total`` task: label id -> class name.
TS_TOTAL: dict[int, str] = {int(i): name for i, name in class_map["total"].items()}
_TS_IDS: dict[str, int] = {name: i for i, name in TS_TOTAL.items()}

#: Default organ classes: class name -> the TotalSegmentator ``total`` names it groups.
ORGAN_CLASSES: dict[str, tuple[str, ...]] = {
    "kidney": ("kidney_left", "kidney_right"),
    "liver": ("liver",),
    "lung": (
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    ),
    "muscle": (
        "autochthon_left",
        "autochthon_right",
        "iliopsoas_left",
        "iliopsoas_right",
        "gluteus_maximus_left",
        "gluteus_maximus_right",
        "gluteus_medius_left",
        "gluteus_medius_right",
    ),
}

SPLITS = ("train", "val", "test")
COMBINED = "combined.nii.gz"


class OrganPatchError(ValueError):
    """Bad input for patch preparation: one line naming the file or folder and the problem."""


# --------------------------------------------------------------------------------------------------------------
# reading subjects
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One subject in RAS orientation.

    Attributes:
        name: the subject folder's name.
        hu: int16 CT ``(X, Y, Z)``.
        labels: uint8 TotalSegmentator ``total`` ids, same shape.
        spacing: voxel size in mm.
        present: TotalSegmentator names with at least one voxel.
        source: where the labels came from (``masks`` or ``combined``).
    """

    name: str
    hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    present: list[str] = field(default_factory=list)
    source: str = "masks"


def _load(path: Path, what: str) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Load a NIfTI file and its voxels (read now, so a truncated file fails here), or raise one line."""
    if not path.is_file():
        raise OrganPatchError(f"{path}: {what} not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as err:  # nibabel, gzip and zlib raise many types for broken files
        raise OrganPatchError(f"{path}: unreadable {what} ({type(err).__name__}: {err})") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise OrganPatchError(f"{path}: {what} must be a 3D volume, got shape {data.shape}")
    return img, data


def _same_grid(ref: nib.Nifti1Image, img: nib.Nifti1Image, path: Path, ref_path: Path) -> None:
    if img.shape[:3] != ref.shape[:3]:
        raise OrganPatchError(f"{path}: shape {img.shape[:3]} does not match {ref_path.name} {ref.shape[:3]}")
    if not np.allclose(img.affine, ref.affine, atol=1e-3):
        raise OrganPatchError(f"{path}: affine does not match the affine of {ref_path.name}")


def combine_masks(seg_dir: str | os.PathLike, reference: nib.Nifti1Image, ref_path: Path | None = None) -> np.ndarray:
    """Combine TotalSegmentator's binary masks into one uint8 label map of ``total`` ids.

    Masks whose names the ``total`` task does not know (other tasks' outputs) are skipped. Every mask must be on the
    reference grid.

    Args:
        seg_dir: the ``segmentations`` folder.
        reference: the CT the masks belong to.
        ref_path: its path, for messages.

    Returns:
        ``(X, Y, Z)`` uint8 labels in the voxel grid of the files (not reoriented).

    Raises:
        OrganPatchError: for an unreadable mask or one on another grid.
    """
    seg_dir = Path(seg_dir)
    ref_path = ref_path or seg_dir.parent / "ct.nii.gz"
    labels = np.zeros(reference.shape[:3], dtype=np.uint8, order="F")  # nibabel arrays are Fortran-ordered
    for path in sorted(seg_dir.glob("*.nii.gz")):
        name = path.name[: -len(".nii.gz")]
        if name not in _TS_IDS:
            logger.info("%s: not a class of TotalSegmentator's total task, skipped", path)
            continue
        img, data = _load(path, "mask")
        _same_grid(reference, img, path, ref_path)
        mask = data != 0 if data.dtype.kind in "biu" else data > 0.5
        np.copyto(labels, np.uint8(_TS_IDS[name]), where=mask)
    return labels


def _label_map_of(img: nib.Nifti1Image) -> dict[int, str] | None:
    """The label map in TotalSegmentator's NIfTI extension header, or ``None`` when there is none."""
    if not img.header.extensions:
        return None
    try:
        from totalsegmentator.nifti_ext_header import load_multilabel_nifti

        return load_multilabel_nifti(img)[1]
    except Exception:  # an extension of another kind
        return None


def _to_total_ids(labels: np.ndarray, label_map: Mapping[int, str] | None, path: Path) -> np.ndarray:
    """Remap a multi-label map whose header names its labels to ``total`` ids (unknown names become 0)."""
    if not label_map or all(_TS_IDS.get(name) == i for i, name in label_map.items()):
        return labels
    lut = np.zeros(256, dtype=np.uint8)
    for i, name in label_map.items():
        if 0 <= int(i) < 256 and name in _TS_IDS:
            lut[int(i)] = _TS_IDS[name]
    logger.info("%s: labels remapped from its header's label map to TotalSegmentator total ids", path)
    return lut[labels]


def _write_combined(path: Path, labels: np.ndarray, affine: np.ndarray) -> None:
    from totalsegmentator.nifti_ext_header import add_label_map_to_nifti

    img = nib.Nifti1Image(labels.astype(np.uint8), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img = add_label_map_to_nifti(img, TS_TOTAL)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _resample_in_plane(volume: np.ndarray, spacing: tuple[float, ...], target: float, order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    factors = (spacing[0] / target, spacing[1] / target, 1.0)
    return zoom(volume, factors, order=order, mode="nearest", grid_mode=True)


def read_subject(
    folder: str | os.PathLike,
    spacing: float | None = None,
    write_combined: bool = True,
) -> Subject:
    """Read one TotalSegmentator subject folder into RAS arrays.

    Labels come from ``segmentations/*.nii.gz`` (combined and cached as ``combined.nii.gz``), or from an existing
    ``combined.nii.gz`` when there is no newer mask.

    Args:
        folder: the subject folder with ``ct.nii.gz``.
        spacing: resample in-plane to this voxel size in mm (``None``: keep the scan's spacing; slices are kept).
        write_combined: write ``combined.nii.gz`` beside the masks (skipped with a log line when read-only).

    Raises:
        OrganPatchError: missing or unreadable CT, no labels, or labels on another grid (one line, naming the file).
    """
    folder = Path(folder)
    ct_path = folder / "ct.nii.gz"
    ct, ct_data = _load(ct_path, "CT")
    seg_dir, combined_path = folder / "segmentations", folder / COMBINED
    masks = sorted(seg_dir.glob("*.nii.gz")) if seg_dir.is_dir() else []
    use_combined = combined_path.is_file() and (
        not masks or combined_path.stat().st_mtime >= max(p.stat().st_mtime for p in masks)
    )
    if use_combined:
        img, raw = _load(combined_path, "combined label map")
        _same_grid(ct, img, combined_path, ct_path)
        if raw.min() < 0 or raw.max() > 255 or not np.array_equal(raw, np.round(raw)):
            raise OrganPatchError(f"{combined_path}: not a label map (values must be integers 0..255)")
        labels = _to_total_ids(raw.astype(np.uint8), _label_map_of(img), combined_path)
        source = "combined"
    elif masks:
        labels = combine_masks(seg_dir, ct, ct_path)
        source = "masks"
        if write_combined:
            try:
                _write_combined(combined_path, labels, ct.affine)
            except PermissionError:
                logger.info("%s: folder is read-only, combined.nii.gz not written", folder)
    else:
        raise OrganPatchError(f"{folder}: no segmentations/*.nii.gz masks and no {COMBINED}")
    # RAS orientation, the same for the CT and its labels
    ornt = nib.orientations.io_orientation(ct.affine)
    to_ras = nib.orientations.ornt_transform(ornt, nib.orientations.axcodes2ornt("RAS"))
    hu = nib.orientations.apply_orientation(ct_data, to_ras)
    labels = nib.orientations.apply_orientation(labels, to_ras)
    vox = tuple(float(v) for v in np.asarray(nib.affines.voxel_sizes(ct.affine))[np.argsort(ornt[:, 0])])
    if hu.dtype != np.int16:
        hu = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    # Fortran order: every axial slice is contiguous (and it is nibabel's order, so mostly no copy)
    hu, labels = np.asfortranarray(hu), np.asfortranarray(labels, dtype=np.uint8)
    if spacing is not None and (abs(vox[0] - spacing) > 1e-3 or abs(vox[1] - spacing) > 1e-3):
        hu = _resample_in_plane(hu, vox, float(spacing), order=1)
        labels = _resample_in_plane(labels, vox, float(spacing), order=0)
        vox = (float(spacing), float(spacing), vox[2])
    present = [TS_TOTAL[i] for i in np.unique(labels).tolist() if i in TS_TOTAL]
    return Subject(folder.name, hu, labels, vox, present, source)


def find_subjects(input_dir: str | os.PathLike) -> list[Path]:
    """Subject folders under ``input_dir`` (each holding ``ct.nii.gz``), or ``input_dir`` itself if it is one.

    Raises:
        OrganPatchError: missing folder, or no subject in it.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise OrganPatchError(f"{root}: input folder not found")
    if (root / "ct.nii.gz").exists():
        return [root]
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and (p / "ct.nii.gz").exists())
    if not subjects:
        raise OrganPatchError(f"{root}: no subject folders with ct.nii.gz (TotalSegmentator layout)")
    return subjects


# --------------------------------------------------------------------------------------------------------------
# vectorised patch selection and extraction
# --------------------------------------------------------------------------------------------------------------
def window_to_uint8(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Map HU in ``[level - width/2, level + width/2]`` linearly to 0..255 (uint8), clipping outside."""
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _class_lut(classes: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Lookup table ``total`` id -> class index (1..K), 0 for labels in no class."""
    lut = np.zeros(256, dtype=np.uint8)
    for k, (cls, names) in enumerate(classes.items(), start=1):
        for name in names:
            if name not in _TS_IDS:
                raise OrganPatchError(f"class {cls!r}: {name!r} is not a TotalSegmentator total class name")
            lut[_TS_IDS[name]] = k
    return lut


def count_windows(mask: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """Pixels of ``mask`` inside every ``patch`` x ``patch`` window on a ``stride`` grid, for every slice at once.

    The mask is summed over blocks of ``gcd(patch, stride)`` pixels, and a 2D cumulative sum over the block grid
    gives all window sums with four lookups: no loop over windows or slices.

    Args:
        mask: boolean ``(X, Y, Z)``.
        patch: window side in pixels.
        stride: step between windows in pixels.

    Returns:
        int32 ``(nx, ny, Z)``: window ``(i, j)`` starts at pixel ``(i * stride, j * stride)``.
    """
    X, Y, Z = mask.shape
    if X < patch or Y < patch:
        return np.zeros((0, 0, Z), dtype=np.int32)
    b = math.gcd(patch, stride)
    nbx, nby = X // b, Y // b
    zyx = mask.T  # a C-ordered view of a Fortran-ordered volume: block sums then run over contiguous memory
    blocks = zyx[:, : nby * b, : nbx * b].reshape(Z, nby, b, nbx, b).sum(axis=(2, 4), dtype=np.int32).T
    cum = np.zeros((nbx + 1, nby + 1, Z), dtype=np.int32)
    cum[1:, 1:] = blocks.cumsum(0).cumsum(1)
    q, r = patch // b, stride // b
    i = np.arange(0, nbx - q + 1, r)
    j = np.arange(0, nby - q + 1, r)
    ii, jj = i[:, None], j[None, :]
    return cum[ii + q, jj + q] - cum[ii, jj + q] - cum[ii + q, jj] + cum[ii, jj]


@dataclass
class PatchSet:
    """Patches of one subject.

    Attributes:
        images: uint8 ``(N, patch, patch)`` windowed patches in radiological display orientation.
        classes: ``(N,)`` class index into the class list.
        positions: ``(N, 3)`` RAS voxel ``(x0, y0, z)`` of each patch's corner (after optional resampling).
        purity: ``(N,)`` share of the labelled pixels that belong to the class.
        fill: ``(N,)`` share of the patch that is labelled.
    """

    images: np.ndarray
    classes: np.ndarray
    positions: np.ndarray
    purity: np.ndarray
    fill: np.ndarray

    def __len__(self) -> int:
        return int(self.classes.shape[0])


def to_display(patches: np.ndarray) -> np.ndarray:
    """RAS ``(..., x, y)`` patches to radiological display ``(..., row, col)``: anterior up, patient right left."""
    return np.ascontiguousarray(np.swapaxes(patches, -1, -2)[..., ::-1, ::-1])


def extract_patches(
    hu: np.ndarray,
    labels: np.ndarray,
    classes: Mapping[str, Sequence[str]] = ORGAN_CLASSES,
    patch_size: int = 64,
    stride: int = 16,
    purity: float = 0.95,
    min_fill: float = 0.9,
    window: tuple[float, float] = (40.0, 400.0),
    slice_step: int = 1,
) -> PatchSet:
    """Select and cut pure organ patches from every axial slice of one RAS volume, vectorised.

    Args:
        hu: CT ``(X, Y, Z)`` in HU, RAS.
        labels: ``total`` ids, same shape.
        classes: class name -> TotalSegmentator names (the class index is the order of this mapping).
        patch_size: window side in pixels.
        stride: step between windows in pixels.
        purity: a window is kept when one class covers more than this share of its labelled pixels...
        min_fill: ...and labelled pixels cover at least this share of the window.
        window: HU window (level, width) mapped to 0..255.
        slice_step: use every ``slice_step``-th axial slice.

    Returns:
        the kept patches with their class, position, purity and fill.
    """
    if hu.shape != labels.shape:
        raise OrganPatchError(f"CT shape {hu.shape} and label shape {labels.shape} differ")
    if not 0.0 < purity <= 1.0 or not 0.0 <= min_fill <= 1.0:
        raise ValueError(f"purity must be in (0, 1] and min_fill in [0, 1], got {purity}, {min_fill}")
    if patch_size < 2 or stride < 1:
        raise ValueError(f"patch_size must be >= 2 and stride >= 1, got {patch_size}, {stride}")
    zs = np.arange(0, hu.shape[2], max(1, int(slice_step)))
    lab = labels[:, :, zs] if slice_step > 1 else labels
    group = _class_lut(classes)[lab.T].T  # keeps the memory order of lab
    area = float(patch_size * patch_size)
    labelled = count_windows(lab > 0, patch_size, stride)
    per_class = np.stack([count_windows(group == k, patch_size, stride) for k in range(1, len(classes) + 1)], -1)
    best = per_class.argmax(-1)
    best_count = np.take_along_axis(per_class, best[..., None], -1)[..., 0]
    pure = (best_count > purity * labelled) | (best_count == labelled)  # "more than", and 100 % passes 1.0
    keep = pure & (labelled >= min_fill * area) & (labelled > 0)
    i, j, k = np.nonzero(keep)
    x0, y0, z = i * stride, j * stride, zs[k]
    if i.size:
        view = sliding_window_view(hu, (patch_size, patch_size), axis=(0, 1))  # (X-p+1, Y-p+1, Z, p, p), no copy
        images = to_display(window_to_uint8(view[x0, y0, z], *window))
    else:
        images = np.zeros((0, patch_size, patch_size), dtype=np.uint8)
    return PatchSet(
        images=images,
        classes=best[i, j, k].astype(np.int64),
        positions=np.stack([x0, y0, z], 1).astype(np.int64),
        purity=(best_count[i, j, k] / np.maximum(labelled[i, j, k], 1)).astype(np.float32),
        fill=(labelled[i, j, k] / area).astype(np.float32),
    )


# --------------------------------------------------------------------------------------------------------------
# writing, splitting, balancing
# --------------------------------------------------------------------------------------------------------------
def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_pngs(folder: Path, names: Sequence[str], images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images, strict=True):
        (folder / name).write_bytes(_png_bytes(image))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.array(im.convert("L"))
    except Exception as err:
        raise OrganPatchError(f"{path}: unreadable PNG ({type(err).__name__}: {err})") from err


def _split_subjects(names: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Subject name -> split, reproducibly; every split with a positive fraction gets at least one subject."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction and test_fraction must be >= 0 with sum < 1, got {val_fraction}, {test_fraction}"
        )
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise OrganPatchError(
            f"{n} subject(s) cannot be split into train/val/test (val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}); give more subjects or set the fractions to 0"
        )
    split = {}
    for idx, name in enumerate(order):
        split[name] = "test" if idx < n_test else "val" if idx < n_test + n_val else "train"
    return split


def _augmenter(seed: int):
    """Rotation, mirroring and brightness for topping up small classes (MONAI transforms, seeded)."""
    from monai.transforms import Compose, RandFlip, RandRotate, RandScaleIntensity

    aug = Compose(
        [
            RandRotate(range_x=np.pi / 9, prob=1.0, padding_mode="reflection", keep_size=True),
            RandFlip(spatial_axis=0, prob=0.5),
            RandFlip(spatial_axis=1, prob=0.5),
            RandScaleIntensity(factors=0.15, prob=1.0),
        ]
    )
    aug.set_random_state(seed=seed)
    return aug


def balance_patches(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    target: int = 500,
    augment: bool = True,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    quiet: bool = False,
) -> dict[str, dict[str, int]]:
    """Copy a folder of class folders of PNGs to ``dst`` with ``target`` patches per class.

    Classes with more than ``target`` patches are undersampled at random; classes with fewer keep all of theirs
    and, when ``augment`` is true, are topped up with augmented copies (``aug<n>_<source>.png``: rotation up to
    20 degrees with reflection padding, mirroring, brightness scaled by up to 15 %). Files are hard-linked when
    possible. ``dst`` is written atomically (a temporary folder renamed when complete).

    Args:
        src: folder of ``<class>/*.png``.
        dst: destination folder (replaced).
        target: patches per class.
        augment: top up small classes (training split); false only undersamples (held-out splits).
        seed: sampling and augmentation seed.
        classes: the class folders to balance (default: all of ``src``'s subfolders).
        quiet: do not log classes without patches.

    Returns:
        class -> ``{"source": n, "kept": n, "augmented": n}``.

    Raises:
        OrganPatchError: missing ``src``.
    """
    import torch

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise OrganPatchError(f"{src}: patch folder not found")
    if target < 1:
        raise ValueError(f"target must be >= 1, got {target}")
    names = list(classes) if classes is not None else sorted(p.name for p in src.iterdir() if p.is_dir())
    rng = random.Random(seed)
    aug = _augmenter(seed)
    report: dict[str, dict[str, int]] = {}
    with atomic_path(dst) as tmp:
        tmp.mkdir(parents=True)
        for cls in names:
            files = sorted((src / cls).glob("*.png")) if (src / cls).is_dir() else []
            out = tmp / cls
            out.mkdir()
            chosen = rng.sample(files, target) if len(files) > target else files
            for f in chosen:
                _link_or_copy(f, out / f.name)
            n_aug = 0
            if augment and files and len(files) < target:
                sources = [files[i % len(files)] for i in range(target - len(files))]
                rng.shuffle(sources)
                for n, f in enumerate(sources):
                    image = torch.as_tensor(_read_png(f), dtype=torch.float32)[None]
                    new = np.asarray(aug(image))[0]
                    new = np.clip(np.rint(new), 0, 255).astype(np.uint8)
                    (out / f"aug{n:04d}_{f.name}").write_bytes(_png_bytes(new))
                n_aug = len(sources)
            if not files and not quiet:
                logger.warning("%s: class %r has no patches", src, cls)
            report[cls] = {"source": len(files), "kept": len(chosen), "augmented": n_aug}
    return report


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare_organ_patches(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    classes: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    patch_size: int = 64,
    stride: int = 16,
    purity: float = 0.95,
    min_fill: float = 0.9,
    window: tuple[float, float] = (40.0, 400.0),
    spacing: float | None = None,
    slice_step: int = 1,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    balance: int | None = 500,
    seed: int = 0,
    overwrite: bool = False,
    write_combined: bool = True,
    progress: bool = True,
) -> dict:
    """TotalSegmentator subject folders -> class folders of organ patches, split by subject and balanced.

    Writes, atomically (a temporary folder renamed when everything succeeded)::

        out_dir/extracted/{train,val,test}/<class>/<subject>_z<z>_x<x>_y<y>.png   every kept patch
        out_dir/{train,val,test}/<class>/*.png    balanced: train to ``balance`` per class (augmented up),
                                                  val/test undersampled to at most ``balance`` per class
        out_dir/manifest.csv                      one row per extracted patch
        out_dir/summary.json                      settings, counts per split and class, missing organs, timing

    Args:
        input_dir: a folder of subject folders (or one subject folder) in TotalSegmentator's layout.
        out_dir: destination; must not exist or be empty unless ``overwrite``.
        classes: class -> TotalSegmentator names, or a list of default class names (default :data:`ORGAN_CLASSES`).
        patch_size: patch side in pixels.
        stride: sliding-window step in pixels.
        purity: keep a window when one class covers more than this share of its labelled pixels.
        min_fill: ... and labelled pixels fill at least this share of it.
        window: HU (level, width) mapped to 0..255.
        spacing: resample in-plane to this many mm first (``None``: native spacing).
        slice_step: use every n-th axial slice.
        val_fraction: share of subjects for validation.
        test_fraction: share of subjects held out for testing.
        balance: patches per class after balancing (``None`` or 0: no balancing; the splits are then copies of
            ``extracted``).
        seed: subject split, sampling and augmentation seed.
        overwrite: replace a non-empty ``out_dir``.
        write_combined: write ``combined.nii.gz`` into each subject folder.
        progress: show a progress bar.

    Returns:
        the summary (also written to ``summary.json``).

    Raises:
        OrganPatchError: bad input (one line naming the file) or an ``out_dir`` that is not empty.
    """
    classes = _resolve_classes(classes)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OrganPatchError(f"{out}: output folder exists and is not empty (pass overwrite=True to replace it)")
    subjects = find_subjects(input_dir)
    _class_lut(classes)  # check the names before any work
    split_of = _split_subjects([s.name for s in subjects], val_fraction, test_fraction, seed)
    names = list(classes)
    counts = {s: dict.fromkeys(names, 0) for s in SPLITS}
    missing: dict[str, list[str]] = {}
    rows: list[list] = []
    t_read = t_extract = t_write = 0.0
    n_patches = 0
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        bar = tqdm(subjects, desc="organ patches", unit="subject", disable=not progress)
        for folder in bar:
            t0 = time.perf_counter()
            subject = read_subject(folder, spacing=spacing, write_combined=write_combined)
            t1 = time.perf_counter()
            patches = extract_patches(
                subject.hu, subject.labels, classes, patch_size, stride, purity, min_fill, window, slice_step
            )
            t2 = time.perf_counter()
            absent = [c for c, members in classes.items() if not set(members) & set(subject.present)]
            if absent:
                missing[subject.name] = absent
                logger.warning(
                    "%s: no mask of %s; it contributes patches of the other classes only", folder, ", ".join(absent)
                )
            split = split_of[subject.name]
            for k, cls in enumerate(names):
                sel = np.flatnonzero(patches.classes == k)
                files = [f"{subject.name}_z{z:04d}_x{x:04d}_y{y:04d}.png" for x, y, z in patches.positions[sel]]
                _write_pngs(tmp / "extracted" / split / cls, files, patches.images[sel])
                counts[split][cls] += len(sel)
                for f, idx in zip(files, sel, strict=True):
                    x, y, z = patches.positions[idx]
                    rows.append(
                        [
                            f"extracted/{split}/{cls}/{f}",
                            subject.name,
                            split,
                            cls,
                            int(z),
                            int(x),
                            int(y),
                            round(float(patches.purity[idx]), 4),
                            round(float(patches.fill[idx]), 4),
                        ]
                    )
            t3 = time.perf_counter()
            t_read, t_extract, t_write = t_read + t1 - t0, t_extract + t2 - t1, t_write + t3 - t2
            n_patches += len(patches)
            bar.set_postfix(patches=n_patches)
        balanced = {}
        for split in SPLITS:
            if not any(counts[split].values()) and split != "train":
                continue
            src = tmp / "extracted" / split
            src.mkdir(parents=True, exist_ok=True)
            if balance:
                balanced[split] = balance_patches(
                    src, tmp / split, int(balance), augment=split == "train", seed=seed, classes=names, quiet=True
                )
            else:
                shutil.copytree(src, tmp / split, copy_function=_link_or_copy_str)
        empty = [c for c in names if counts["train"][c] == 0]
        if empty:
            logger.warning("no training patches of class(es) %s", ", ".join(empty))
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "subject", "split", "class", "z", "x0", "y0", "purity", "fill"])
            writer.writerows(rows)
        summary = {
            "input_dir": str(input_dir),
            "classes": {c: list(m) for c, m in classes.items()},
            "settings": {
                "patch_size": patch_size,
                "stride": stride,
                "purity": purity,
                "min_fill": min_fill,
                "window": list(window),
                "spacing": spacing,
                "slice_step": slice_step,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "balance": balance,
                "seed": seed,
            },
            "subjects": {s: split_of[s] for s in sorted(split_of)},
            "missing_classes": missing,
            "extracted": counts,
            "balanced": balanced,
            "timing_s": {"read": round(t_read, 2), "extract": round(t_extract, 2), "write": round(t_write, 2)},
            "n_patches": n_patches,
        }
        write_json(tmp / "summary.json", summary)
    return summary


def _link_or_copy_str(src: str, dst: str) -> None:
    _link_or_copy(Path(src), Path(dst))


def _resolve_classes(classes: Mapping[str, Sequence[str]] | Sequence[str] | str | None) -> dict[str, tuple[str, ...]]:
    """Class groups from a mapping, a list of default class names or TotalSegmentator names, or a JSON string."""
    if classes is None:
        return dict(ORGAN_CLASSES)
    if isinstance(classes, str):
        try:
            classes = json.loads(classes)
        except json.JSONDecodeError:
            classes = [c.strip() for c in classes.split(",") if c.strip()]
    if isinstance(classes, Mapping):
        out = {str(c): tuple([m] if isinstance(m, str) else m) for c, m in classes.items()}
    else:
        out = {}
        for c in classes:
            if c in ORGAN_CLASSES:
                out[c] = ORGAN_CLASSES[c]
            elif c in _TS_IDS:
                out[c] = (c,)
            else:
                raise OrganPatchError(
                    f"unknown class {c!r}: not a default class ({', '.join(ORGAN_CLASSES)}) nor a TotalSegmentator name"
                )
    if len(out) < 2:
        raise OrganPatchError(f"need at least 2 classes, got {list(out)}")
    return out


# --------------------------------------------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------------------------------------------
def bench_organ_patches(
    shape: Sequence[int] = (512, 512, 200), seed: int = 0, stride: int = 16, repeats: int = 3
) -> dict:
    """Patches per second on one generated subject: selection + cutting alone, and end to end with PNGs.

    A synthetic abdominal CT of ``shape`` is written in TotalSegmentator's layout to a temporary folder;
    ``extract_patches`` is timed on the loaded arrays (best of ``repeats``), then the whole preparation
    (read, combine, extract, write PNGs, no balancing) once.

    Prints and returns a JSON-able dict.
    """
    import tempfile

    from .synthetic_abdomen import generate_abdominal_ct
    from .writers import write_totalsegmentator_subject

    ct = generate_abdominal_ct(seed=seed, shape=tuple(shape))
    with tempfile.TemporaryDirectory() as tmp:
        masks = {name: ct.mask(name) for name in ct.present_structures()}
        write_totalsegmentator_subject(Path(tmp) / "ts" / "Subject_001", ct.image, ct.affine, masks)
        t0 = time.perf_counter()
        subject = read_subject(Path(tmp) / "ts" / "Subject_001", write_combined=True)
        read_s = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            patches = extract_patches(subject.hu, subject.labels, stride=stride)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        summary = prepare_organ_patches(
            Path(tmp) / "ts",
            Path(tmp) / "out",
            stride=stride,
            val_fraction=0,
            test_fraction=0,
            balance=None,
            progress=False,
        )
        total_s = time.perf_counter() - t0
    best = min(times)
    result = {
        "shape": list(shape),
        "spacing_mm": [round(s, 3) for s in subject.spacing],
        "stride": stride,
        "patches": len(patches),
        "per_class": {c: int((patches.classes == k).sum()) for k, c in enumerate(ORGAN_CLASSES)},
        "extract_s": round(best, 3),
        "extract_patches_per_s": round(len(patches) / best, 1),
        "read_and_combine_s": round(read_s, 2),
        "end_to_end_s": round(total_s, 2),
        "end_to_end_patches_per_s": round(summary["n_patches"] / total_s, 1),
        "end_to_end_timing_s": summary["timing_s"],
    }
    print(json.dumps(result))
    return result
