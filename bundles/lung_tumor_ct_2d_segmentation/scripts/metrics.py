"""Per-class segmentation metrics for the Ignite evaluator: Dice, IoU, pixel accuracy and pixel AUC-ROC.

Dice, IoU and per-class accuracy are MONAI handlers on one channel of the one-hot prediction and label
(:func:`select_class`). The AUC-ROC is over pixels: the softmax probability of a class against its one-hot label,
accumulated as two histograms (positive and negative pixels, ``bins`` levels of probability), so whole volumes of
any size cost a few kilobytes and the AUC is exact up to ties within a bin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import ConfusionMatrix, MeanDice, MeanIoUHandler, from_engine

__all__ = [
    "PixelAUC",
    "PixelAccuracy",
    "class_histograms",
    "dice_metrics",
    "roc_from_histograms",
    "segmentation_metrics",
    "select_class",
]


def select_class(index: int, keys: tuple[str, str] = ("pred", "label")) -> Callable:
    """An ``output_transform`` that keeps channel ``index`` of one-hot predictions and labels."""
    take = from_engine(list(keys))

    def _transform(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        preds, labels = take(output)
        return [p[index : index + 1] for p in preds], [lab[index : index + 1] for lab in labels]

    return _transform


def _positives(label: torch.Tensor, index: int) -> torch.Tensor:
    """Boolean mask of class ``index`` from a one-hot label ``(C, ...)`` or a label map ``(1, ...)``."""
    return label[index] > 0.5 if label.shape[0] > 1 else label[0].round() == index


def class_histograms(prob: torch.Tensor, positive: torch.Tensor, bins: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Histograms over ``[0, 1]`` of the probabilities of positive and of negative pixels."""
    idx = (prob.detach().float().clamp(0, 1) * bins).long().clamp_max(bins - 1).flatten()
    pos = positive.flatten().to(idx.device)
    return (
        torch.bincount(idx[pos], minlength=bins).double().cpu(),
        torch.bincount(idx[~pos], minlength=bins).double().cpu(),
    )


def roc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (false- and true-positive rates, thresholds from high to low) and its area.

    The area is ``nan`` when there are no positive or no negative pixels.
    """
    pos, neg = np.asarray(pos, dtype=np.float64)[::-1], np.asarray(neg, dtype=np.float64)[::-1]
    tp, fp = np.concatenate([[0.0], np.cumsum(pos)]), np.concatenate([[0.0], np.cumsum(neg)])
    if tp[-1] == 0 or fp[-1] == 0:
        return fp, tp, float("nan")
    tpr, fpr = tp / tp[-1], fp / fp[-1]
    return fpr, tpr, float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


class PixelAUC(Metric):
    """Area under the ROC curve of one class over all pixels of all evaluated images.

    Args:
        index: the class channel.
        bins: probability levels of the histograms.
        output_transform: gives ``(probabilities, labels)``, lists of ``(C, ...)`` tensors; by default the
            ``probs`` (softmax or sigmoid) and ``label`` (one-hot or label map) items of the engine output.
    """

    def __init__(self, index: int, bins: int = 1000, output_transform: Callable | None = None, device="cpu"):
        self.index, self.bins = int(index), int(bins)
        super().__init__(output_transform=output_transform or from_engine(["probs", "label"]), device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._pos = torch.zeros(self.bins, dtype=torch.float64)
        self._neg = torch.zeros(self.bins, dtype=torch.float64)

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        probs, labels = output
        for prob, label in zip(probs, labels, strict=True):
            pos, neg = class_histograms(prob[self.index], _positives(label, self.index), self.bins)
            self._pos += pos
            self._neg += neg

    @sync_all_reduce("_pos", "_neg")
    def compute(self) -> float:
        return roc_from_histograms(self._pos.numpy(), self._neg.numpy())[2]


class PixelAccuracy(Metric):
    """Share of pixels whose predicted class (argmax) is the labelled class, over all evaluated images."""

    def __init__(self, output_transform: Callable | None = None, device="cpu"):
        super().__init__(output_transform=output_transform or from_engine(["pred", "label"]), device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._correct = torch.zeros((), dtype=torch.float64)
        self._total = torch.zeros((), dtype=torch.float64)

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        preds, labels = output
        for pred, label in zip(preds, labels, strict=True):
            p = pred.argmax(0) if pred.shape[0] > 1 else pred[0].round()
            y = label.argmax(0) if label.shape[0] > 1 else label[0].round()
            self._correct += (p == y.to(p.device)).sum().double().cpu()
            self._total += float(p.numel())

    @sync_all_reduce("_correct", "_total")
    def compute(self) -> float:
        return float(self._correct / self._total) if self._total > 0 else float("nan")


def segmentation_metrics(
    class_names: Sequence[str], prefix: str = "val_", save_details: bool = True, auc: bool = True
) -> dict[str, Metric]:
    """Dice, IoU, accuracy (and AUC-ROC) of every foreground class, plus the overall pixel accuracy.

    Args:
        class_names: names by class index, background first.
        prefix: metric name prefix.
        save_details: keep per-image values (``MetricsSaver`` writes them to ``<metric>_raw.csv``).
        auc: add the pixel AUC-ROC (needs a ``probs`` item in the engine output).

    Returns:
        ``{"val_liver_dice": ..., "val_liver_iou": ..., "val_liver_accuracy": ..., "val_liver_auc": ...,
        "val_pixel_accuracy": ...}``.
    """
    metrics: dict[str, Metric] = {f"{prefix}pixel_accuracy": PixelAccuracy()}
    for index, name in enumerate(class_names):
        if index == 0:
            continue
        pick = select_class(index)
        metrics[f"{prefix}{name}_dice"] = MeanDice(
            include_background=True, output_transform=pick, save_details=save_details
        )
        metrics[f"{prefix}{name}_iou"] = MeanIoUHandler(
            include_background=True, output_transform=pick, save_details=save_details
        )
        # its per-image details are (TP, FP, TN, FN) tables, which MetricsSaver cannot summarise: not saved
        metrics[f"{prefix}{name}_accuracy"] = ConfusionMatrix(
            include_background=True, metric_name="accuracy", output_transform=pick, save_details=False
        )
        if auc:
            metrics[f"{prefix}{name}_auc"] = PixelAUC(index)
    return metrics


def dice_metrics(class_names: Sequence[str], prefix: str = "val_") -> dict[str, Metric]:
    """Dice of every foreground class (``val_<class>_dice``), for validation during training."""
    return {
        f"{prefix}{name}_dice": MeanDice(include_background=True, output_transform=select_class(index))
        for index, name in enumerate(class_names)
        if index > 0
    }
