"""Training, validation and held-out datalists from a Medical Segmentation Decathlon task folder.

``dataset.json`` is read with MONAI's ``load_decathlon_datalist``; the training cases are split by case into
training and validation with a fixed seed (``partition_dataset``). Held-out cases with labels are read from
``imagesTs``/``labelsTs`` when ``labelsTs`` exists. Every image/label pair is checked (complete files, same shape
and affine) before training starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist, partition_dataset

from .inputs import InputError, check_nifti, is_nifti

logger = logging.getLogger(__name__)

__all__ = ["check_pair", "decathlon_datalist", "split_datalist"]


def check_pair(image: str, label: str, atol: float = 1e-3, num_classes: int | None = None) -> None:
    """Check that an image and its label are complete files with the same shape and affine.

    Args:
        image: image file.
        label: label file.
        atol: tolerance on the affines.
        num_classes: when given, the label's values must lie in ``0 .. num_classes - 1`` (this reads the label);
            an empty label is allowed (the case teaches the background) but logged.

    Raises:
        InputError: naming the label file and the mismatch.
    """
    shape_i, affine_i = check_nifti(image)
    shape_l, affine_l = check_nifti(label)
    if shape_i != shape_l:
        raise InputError(f"{label}: label shape {shape_l} does not match image shape {shape_i} of {image}")
    if not np.allclose(affine_i, affine_l, atol=atol):
        raise InputError(f"{label}: label affine does not match the affine of {image}")
    if num_classes is not None:
        values = np.unique(np.asarray(nib.load(label).dataobj))
        unexpected = [v for v in values.tolist() if v != int(v) or not 0 <= v < num_classes]
        if unexpected:
            shown = ", ".join(f"{v:g}" for v in unexpected[:5])
            raise InputError(f"{label}: unexpected label values {shown} (expected 0..{num_classes - 1})")
        if values.max(initial=0) == 0:
            logger.warning(f"{label}: empty label (background only)")


def _read_cases(dataset_dir: Path, split: str) -> list[dict]:
    if not dataset_dir.is_dir():
        raise InputError(f"{dataset_dir}: dataset folder not found")
    sub = "Tr" if split == "training" else "Ts"
    index = dataset_dir / "dataset.json"
    if split == "training" and index.is_file():
        return load_decathlon_datalist(
            str(index), is_segmentation=True, data_list_key="training", base_dir=str(dataset_dir)
        )
    images_dir, labels_dir = dataset_dir / f"images{sub}", dataset_dir / f"labels{sub}"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        return []
    cases = []
    for image in sorted(p for p in images_dir.iterdir() if is_nifti(p) and not p.name.startswith(".")):
        label = labels_dir / image.name
        if not label.is_file():
            raise InputError(f"{image}: no label {label}")
        cases.append({"image": str(image), "label": str(label)})
    return cases


def split_datalist(cases: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split cases into training and validation by case, reproducibly (``monai.data.partition_dataset``)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(cases) < 2:
        raise InputError(f"need at least 2 labelled cases to split into training and validation, found {len(cases)}")
    n_val = max(1, int(round(len(cases) * val_fraction)))
    train, val = partition_dataset(cases, ratios=[len(cases) - n_val, n_val], shuffle=True, seed=seed)
    return train, val


def decathlon_datalist(
    dataset_dir: str | os.PathLike,
    split: str = "training",
    val_fraction: float = 0.2,
    seed: int = 0,
    max_cases: int | None = None,
    check: bool = True,
    num_classes: int | None = None,
) -> list[dict]:
    """The ``training``, ``validation`` or ``test`` cases of a Decathlon task folder.

    Args:
        dataset_dir: the task folder (``dataset.json``, ``imagesTr``, ``labelsTr``; optional ``imagesTs`` +
            ``labelsTs``).
        split: ``training`` or ``validation`` (a split of the labelled training cases), or ``test`` (held-out
            cases with labels in ``labelsTs``; falls back to ``validation`` when there are none).
        val_fraction: share of the labelled cases held for validation.
        seed: seed of the split.
        max_cases: keep at most this many cases (a quick run); ``None`` keeps all.
        check: check every image/label pair first (complete files, same shape and affine).
        num_classes: also check that label values lie in ``0 .. num_classes - 1``.

    Raises:
        InputError: missing folder, no cases, or a bad image/label pair (one line naming the file).
    """
    dataset_dir = Path(dataset_dir)
    if split not in ("training", "validation", "test"):
        raise ValueError(f"unknown split {split!r}")
    if split == "test":
        cases = _read_cases(dataset_dir, "test")
        if not cases:
            split = "validation"
    if split != "test":
        labelled = _read_cases(dataset_dir, "training")
        if not labelled:
            raise InputError(f"{dataset_dir}: no labelled cases (dataset.json or imagesTr/ + labelsTr/)")
        train, val = split_datalist(labelled, val_fraction, seed)
        cases = train if split == "training" else val
    if max_cases is not None:
        cases = cases[: int(max_cases)]
    if check:
        for case in cases:
            check_pair(case["image"], case["label"], num_classes=num_classes)
    return cases
