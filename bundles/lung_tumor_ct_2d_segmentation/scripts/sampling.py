"""Sampling weights for the training slices: class balance, optionally with small tumour sections drawn more often.

The recipe's ``WeightedRandomSampler`` draws slices with and without tumour equally often
(:func:`scripts.datalist.class_balanced_weights`). Within the tumour slices every slice is then equally likely, so a
5 mm nodule that shows in one slice as a few pixels is drawn as often as one slice of a 6 cm mass that shows in
twelve, and contributes a few pixels to the loss when it is. :func:`size_balanced_weights` keeps the half-and-half
balance and shares the tumour half out in proportion to ``area ** -size_power`` (the tumour pixels of the slice):
``size_power`` 0 is the recipe, 0.5 draws a 4-pixel section 10 times as often as a 400-pixel one.
"""

from __future__ import annotations

import numpy as np

from .datalist import class_balanced_weights
from .inputs import InputError

__all__ = ["size_balanced_weights", "tumour_areas"]


def tumour_areas(items: list[dict]) -> list[int]:
    """Foreground pixels of each training slice's label (``.npy``), 0 for slices without tumour.

    Raises:
        InputError: a label file that cannot be read (one line naming it).
    """
    areas = []
    for item in items:
        if not item.get("classes", True):
            areas.append(0)
            continue
        try:
            label = np.load(item["label"], mmap_mode="r")
        except (OSError, ValueError) as err:
            raise InputError(f"{item['label']}: cannot read the slice label ({err})") from err
        areas.append(int(np.count_nonzero(np.asarray(label) > 0)))
    return areas


def size_balanced_weights(items: list[dict], size_power: float = 0.0) -> list[float]:
    """Class-balanced sampling weights whose tumour half favours slices with small tumour sections.

    Args:
        items: training slices with ``label`` (``.npy`` path) and ``classes`` (the foreground classes present).
        size_power: exponent ``p`` of the weight ``area ** -p`` of a tumour slice; 0 gives
            :func:`~scripts.datalist.class_balanced_weights` exactly (and reads no label).

    Returns:
        one weight per slice; slices with and without tumour still carry half of the total each.

    Raises:
        InputError: items without ``classes``, a negative ``size_power``, or an unreadable label.

    Example::

        weights = size_balanced_weights(items, 0.5)
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(items))
    """
    weights = np.asarray(class_balanced_weights(items), dtype=np.float64)
    if size_power < 0:
        raise InputError(f"size_power must be 0 or more, got {size_power}")
    if size_power == 0:
        return weights.tolist()
    areas = np.asarray(tumour_areas(items), dtype=np.float64)
    fg = areas > 0
    if fg.any():
        raw = areas[fg] ** -float(size_power)
        weights[fg] = raw * (weights[fg].sum() / raw.sum())  # the tumour half keeps its share of the total
    return weights.tolist()
