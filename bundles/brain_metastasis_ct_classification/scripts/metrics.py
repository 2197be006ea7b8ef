"""Patient-level classification metrics: F1, sensitivity, specificity, the F1-maximising threshold, AUC, loss.

:func:`patient_scores` computes everything from patient probabilities and labels; :class:`PatientMetric` is the
Ignite metric that collects one patient logit and label per iteration and reports one of those numbers at epoch
end, at a fixed threshold, at the threshold of a :class:`~scripts.engine.TrainingRecord` (evaluation with the
threshold chosen on validation), or at the threshold that maximises F1 on the data itself (validation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from monai.handlers import from_engine

__all__ = ["STATS", "PatientMetric", "best_f1_threshold", "patient_scores"]

STATS = ("f1", "sensitivity", "specificity", "precision", "accuracy", "threshold", "auc", "bce", "n")


def _logit(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return math.log(p / (1 - p))


def best_f1_threshold(probabilities: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The probability threshold that maximises F1, and that F1.

    Every cut between two sorted probabilities is tried (``prediction = probability >= threshold``); among the cuts
    with the highest F1 the one with the widest gap (in logit space) between the probabilities it separates wins,
    and the threshold is the middle of that gap, so it generalises better than a threshold on a training value.

    Returns:
        ``(threshold, f1)``; with no positive label F1 is 0 and the threshold lies above every probability.
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if p.size == 0:
        return 0.5, float("nan")
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    logits = np.array([_logit(v) for v in p_sorted])
    n_pos = int(y.sum())
    tp = np.concatenate([[0], np.cumsum(y_sorted)])  # tp[k]: positives among the top-k
    k = np.arange(p.size + 1)
    fp = k - tp
    fn = n_pos - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    # only cut between distinct values
    valid = np.ones(p.size + 1, dtype=bool)
    valid[1:-1] = p_sorted[:-1] > p_sorted[1:]
    upper = np.concatenate([[logits[0] + 4.0], logits])  # logit of the k-th highest (cut below it)
    lower = np.concatenate([logits, [logits[-1] - 4.0]])
    gap = upper - lower
    best = np.flatnonzero(valid & (f1 >= f1[valid].max() - 1e-12))
    cut = int(best[np.argmax(gap[best])])
    threshold = 1.0 / (1.0 + math.exp(-(upper[cut] + lower[cut]) / 2))
    return float(threshold), float(f1[cut])


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    if not pos.size or not neg.size:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (pos.size * neg.size))


def patient_scores(logits: Sequence[float], labels: Sequence[int], threshold: float | None = None) -> dict[str, float]:
    """Patient-level scores from patient logits and 0/1 labels.

    Args:
        logits: one logit per patient.
        labels: one label per patient.
        threshold: decision threshold on the probability; ``None`` uses :func:`best_f1_threshold` of these data.

    Returns:
        ``f1``, ``sensitivity``, ``specificity``, ``precision``, ``accuracy`` (at the threshold), ``threshold``,
        ``auc``, ``bce`` (mean binary cross-entropy) and ``n``. Undefined ratios are NaN.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.shape != y.shape:
        raise ValueError(f"{z.size} logits but {y.size} labels")
    p = 1.0 / (1.0 + np.exp(-z))
    if threshold is None:
        threshold, _ = best_f1_threshold(p, y)
    pred = (p >= threshold).astype(np.int64)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return {
        "f1": ratio(2 * tp, 2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "precision": ratio(tp, tp + fp),
        "accuracy": ratio(tp + tn, y.size),
        "threshold": float(threshold),
        "auc": _auc(p, y),
        "bce": float(bce.mean()) if y.size else float("nan"),
        "n": float(y.size),
    }


class PatientMetric(Metric):
    """Ignite metric over patients: collects one logit and label per patient, reports one score per epoch.

    Args:
        stat: one of :data:`STATS`.
        threshold: ``None`` (the F1-maximising threshold of the collected data: validation), a number, or an
            object with a ``threshold`` attribute read at compute time (a checkpoint's record: evaluation).
        output_transform: maps the engine output to ``(logits, labels)`` lists (default: ``pred``, ``label``).
        nan_as: value reported instead of NaN (key metrics must be numbers), ``None`` keeps NaN.
    """

    def __init__(
        self,
        stat: str = "f1",
        threshold: float | Any | None = None,
        output_transform: Callable = from_engine(["pred", "label"]),
        nan_as: float | None = 0.0,
        device: str | torch.device = "cpu",
    ) -> None:
        if stat not in STATS:
            raise ValueError(f"unknown stat {stat!r}; expected one of {', '.join(STATS)}")
        self.stat = stat
        self.threshold = threshold
        self.nan_as = nan_as
        self._logits: list[float] = []
        self._labels: list[int] = []
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._logits, self._labels = [], []

    def update(self, output: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]) -> None:
        preds, labels = output
        for pred, label in zip(preds, labels, strict=True):
            self._logits.append(float(torch.as_tensor(pred).detach().float().reshape(-1).max()))
            self._labels.append(int(float(torch.as_tensor(label).reshape(-1)[0]) > 0.5))

    def _threshold(self) -> float | None:
        if self.threshold is None:
            return None
        return float(getattr(self.threshold, "threshold", self.threshold))

    def compute(self) -> float:
        logits, labels = self._logits, self._labels
        from ignite import distributed as idist

        if idist.get_world_size() > 1:
            logits = [float(v) for v in idist.all_gather(torch.tensor(logits, dtype=torch.float64)).reshape(-1)]
            labels = [int(v) for v in idist.all_gather(torch.tensor(labels, dtype=torch.int64)).reshape(-1)]
        if not labels:
            value = float("nan")
        else:
            value = patient_scores(logits, labels, self._threshold())[self.stat]
        if self.nan_as is not None and not math.isfinite(value):
            return float(self.nan_as)
        return float(value)
