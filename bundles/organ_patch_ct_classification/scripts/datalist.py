"""Datalists from class folders of patch images (``<dataset_dir>/<split>/<class>/*.png``, torchvision's ImageFolder
layout), as ``python -m monai_apps prepare_organ_patches`` writes them."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from .inputs import IMAGE_SUFFIXES, InputError, check_image

__all__ = ["image_folder_datalist"]

logger = logging.getLogger(__name__)


def image_folder_datalist(
    dataset_dir: str | os.PathLike,
    split: str,
    class_names: Sequence[str],
    check: bool = True,
    max_per_class: int | None = None,
) -> list[dict]:
    """``[{"image": path, "label": class index}]`` for every image of ``dataset_dir/split/<class>/``.

    Args:
        dataset_dir: the prepared dataset (``train/``, ``val/``, ``test/``).
        split: the split folder.
        class_names: class folder names in label order (the order of the network's outputs).
        check: open every image header first (a truncated or non-image file fails here, named).
        max_per_class: keep at most this many images per class, a fixed random subset (a quick run).

    Raises:
        InputError: missing folders, a class folder not in ``class_names``, no images, or an unreadable image.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{folder}: split folder not found (expected {split}/<class>/*.png)")
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in class_names)
    if unknown:
        raise InputError(f"{folder}: class folder(s) {', '.join(unknown)} not in class_names {list(class_names)}")
    items = []
    for label, name in enumerate(class_names):
        files = (
            sorted(
                p
                for p in (folder / name).glob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if (folder / name).is_dir()
            else []
        )
        if not files:
            logger.warning("%s: no images of class %r", folder, name)
        if max_per_class is not None and len(files) > int(max_per_class):
            files = sorted(random.Random(label).sample(files, int(max_per_class)))  # a fixed, unbiased subset
        for f in files:
            if check:
                check_image(f)
            items.append({"image": str(f), "label": label})
    if not items:
        raise InputError(f"{folder}: no images in any class folder ({', '.join(class_names)})")
    return items
