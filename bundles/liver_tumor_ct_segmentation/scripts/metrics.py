"""Per-class metric helpers for the Ignite metric handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.handlers import from_engine
from monai.metrics import HausdorffDistanceMetric

__all__ = ["PhysicalHausdorffDistanceMetric", "select_class"]


class PhysicalHausdorffDistanceMetric(HausdorffDistanceMetric):
    """Hausdorff distance in millimetres: the voxel spacing is read from each prediction's affine.

    MONAI's ``HausdorffDistanceMetric`` measures in voxels unless a spacing is passed, and the Ignite handler passes
    none; this subclass takes it from the ``MetaTensor`` so anisotropic volumes give physical distances.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if "spacing" not in kwargs and isinstance(y_pred, MetaTensor):
            kwargs["spacing"] = [float(s) for s in y_pred.pixdim]
        return super()._compute_tensor(y_pred, y, **kwargs)


def select_class(index: int, keys: tuple[str, str] = ("pred", "label")) -> Callable:
    """An ``output_transform`` that keeps channel ``index`` of one-hot predictions and labels."""
    take = from_engine(list(keys))

    def _transform(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        preds, labels = take(output)
        return [p[index : index + 1] for p in preds], [lab[index : index + 1] for lab in labels]

    return _transform
