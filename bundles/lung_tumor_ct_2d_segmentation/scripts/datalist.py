"""Datalists from a prepared slice dataset (``datalist.json``): training slices and whole validation/test volumes.

The dataset is prepared once from volumes (Decathlon, TotalSegmentator subjects, NIfTI/NRRD/DICOM pairs) by
``python -m monai_apps slices`` (see this bundle's docs): axial slices of the RAS-oriented volumes, normalised and
resized exactly as :file:`configs/inference.json` does, split by patient. Its ``datalist.json`` lists

* ``training``: slices ``{"image": "slices/<case>/image_z0042.npy", "label": ..., "patient", "slice", "classes"}``;
* ``volumes``: ``{"training" | "validation" | "test": [{"image": <volume>, "label": "labels/<case>.nii.gz"}]}``.

A plain JSON list of ``{"image", "label"}`` volume pairs (labels already in this bundle's classes) also works as
an evaluation datalist. Relative paths are relative to the JSON file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .inputs import InputError

__all__ = ["class_balanced_weights", "read_datalist", "slice_datalist", "volume_datalist"]

#: keys of a training slice passed on to the transforms (the others, like ``classes``, do not collate)
SLICE_KEYS = ("image", "label")


def read_datalist(datalist_file: str | os.PathLike) -> dict | list:
    """Read a datalist JSON.

    Raises:
        InputError: missing file or invalid JSON (one line naming the file).
    """
    path = Path(datalist_file)
    if path.is_dir():
        path = path / "datalist.json"
    if not path.is_file():
        raise InputError(f"{path}: datalist not found (prepare the slices first: python -m monai_apps slices ...)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from err


def _root(datalist_file: str | os.PathLike) -> Path:
    path = Path(datalist_file)
    return path if path.is_dir() else path.parent


def _resolve(root: Path, item: dict, where: str) -> dict:
    out = dict(item)
    for key in ("image", "label"):
        if key not in item:
            raise InputError(f"{where}: entry without {key!r}: {item!r}")
        path = Path(item[key])
        out[key] = str(path if path.is_absolute() else root / path)
    return out


def slice_datalist(
    datalist_file: str | os.PathLike,
    max_slices: int | None = None,
    check: bool = True,
    keys: tuple | list = SLICE_KEYS,
    skip_first: int = 0,
) -> list[dict]:
    """The training slices ``[{"image", "label"}]`` with absolute paths.

    Args:
        datalist_file: the prepared ``datalist.json`` (or its folder).
        max_slices: keep every n-th slice so that at most this many remain (a quick run); ``None`` keeps all.
        check: check that every slice file exists.
        keys: item keys to keep (``classes`` holds the classes present in each slice).
        skip_first: drop the slices whose index (from the inferior end of the volume) is below this.

    Raises:
        InputError: not a prepared slice datalist, no training slices, or a missing slice file.
    """
    data = read_datalist(datalist_file)
    if not isinstance(data, dict) or "training" not in data:
        raise InputError(f"{datalist_file}: not a prepared slice datalist (no 'training' slices)")
    root = _root(datalist_file)
    items = [_resolve(root, item, str(datalist_file)) for item in data["training"]]
    items = [item for item in items if int(item.get("slice", 0)) >= int(skip_first)]
    if not items:
        raise InputError(f"{datalist_file}: no training slices (skip_first={skip_first})")
    if max_slices is not None and len(items) > int(max_slices):
        step = len(items) / int(max_slices)
        items = [items[int(i * step)] for i in range(int(max_slices))]
    if check:
        for item in items:
            for key in ("image", "label"):
                if not os.path.isfile(item[key]):
                    raise InputError(f"{item[key]}: slice file missing (prepare the slices again)")
    return [{k: item[k] for k in keys if k in item} for item in items]


def volume_datalist(
    datalist_file: str | os.PathLike, split: str = "validation", max_cases: int | None = None
) -> list[dict]:
    """Whole volumes ``[{"image", "label"}]`` of one split, for validation and evaluation with ``SliceInferer``.

    Args:
        datalist_file: a prepared ``datalist.json`` (or its folder), or a JSON list of volume pairs.
        split: ``validation``, ``test`` (falls back to ``validation`` when there are no test volumes) or
            ``training``.
        max_cases: keep at most this many volumes.

    Raises:
        InputError: no volumes, or a missing image or label.
    """
    data = read_datalist(datalist_file)
    root = _root(datalist_file)
    if isinstance(data, list):
        items = data
    else:
        volumes = data.get("volumes", {})
        items = volumes.get(split) or (volumes.get("validation", []) if split == "test" else [])
    items = [_resolve(root, item, str(datalist_file)) for item in items]
    if not items:
        raise InputError(f"{datalist_file}: no {split} volumes")
    if max_cases is not None:
        items = items[: int(max_cases)]
    for item in items:
        for key in ("image", "label"):
            if not os.path.exists(item[key]):
                raise InputError(f"{item[key]}: {key} not found")
    return [{"image": item["image"], "label": item["label"]} for item in items]


def class_balanced_weights(items: list[dict]) -> list[float]:
    """Sampling weights that draw slices with and without foreground equally often.

    Each slice of a group (slices showing the foreground class, slices without it) weighs ``1 / size of its
    group``, the inverse class frequency, so a ``WeightedRandomSampler`` oversamples the rarer group.

    Args:
        items: training slices with their ``classes`` (the foreground classes present).

    Raises:
        InputError: items without ``classes`` (prepare the slices with ``python -m monai_apps slices``).
    """
    if any("classes" not in item for item in items):
        raise InputError("training slices carry no 'classes'; prepare them with python -m monai_apps slices")
    has_fg = [bool(item["classes"]) for item in items]
    n_fg = sum(has_fg)
    n_bg = len(has_fg) - n_fg
    return [1.0 / n_fg if fg else 1.0 / n_bg for fg in has_fg]
