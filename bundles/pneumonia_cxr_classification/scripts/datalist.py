"""Datalists from class folders of radiographs: ``<dataset_dir>/<split>/<CLASS>/*`` (the Kaggle "chest_xray"
layout: ``train``/``val``/``test`` with ``NORMAL``/``PNEUMONIA``), DICOM, PNG or JPEG files."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from .inputs import InputError, _candidate

__all__ = ["class_folder_datalist"]

logger = logging.getLogger(__name__)


def class_folder_datalist(
    dataset_dir: str | os.PathLike,
    split: str,
    class_names: Sequence[str],
    check: bool = True,
    max_per_class: int | None = None,
) -> list[dict]:
    """``[{"image": path, "label": class index}]`` for the files of ``dataset_dir/split/<class>/``.

    Class folders match ``class_names`` case-insensitively (``NORMAL`` is class ``normal``).

    Args:
        dataset_dir: the dataset folder.
        split: ``train``, ``val`` or ``test``.
        class_names: class names in label order.
        check: read every DICOM header first (modality, pixel data): a CT slice or a corrupt file fails here.
        max_per_class: keep at most this many files per class, a fixed random subset (a quick run).

    Raises:
        InputError: missing folders, an unknown class folder, no files, or a bad file (one line).
    """
    from .radiograph import check_radiograph

    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    folder = root / split
    if not folder.is_dir():
        raise InputError(f"{folder}: split folder not found (expected {split}/<CLASS>/*.dcm)")
    wanted = {c.lower(): i for i, c in enumerate(class_names)}
    folders = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    unknown = sorted(n for n in folders if n not in wanted)
    if unknown:
        raise InputError(f"{folder}: class folder(s) {', '.join(unknown)} not in class_names {list(class_names)}")
    items = []
    for name, label in wanted.items():
        files = sorted(p for p in folders[name].rglob("*") if p.is_file() and _candidate(p)) if name in folders else []
        if not files:
            logger.warning("%s: no files of class %r", folder, name)
        if max_per_class is not None and len(files) > int(max_per_class):
            files = sorted(random.Random(label).sample(files, int(max_per_class)))
        for f in files:
            if check:
                check_radiograph(f)
            items.append({"image": str(f), "label": label})
    if not items:
        raise InputError(f"{folder}: no radiographs in any class folder ({', '.join(class_names)})")
    return items
