"""Confusion matrix of a classification evaluator: CSV, per-class precision/recall/F1 and a PNG."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["ConfusionMatrixSaver", "confusion_matrix", "per_class_scores", "save_confusion_png"]

logger = logging.getLogger(__name__)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(num_classes, -1)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class, from a confusion matrix (0 where undefined)."""
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1).astype(np.float64), cm.sum(0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def save_confusion_png(path: str | os.PathLike, cm: np.ndarray, class_names: Sequence[str], title: str = "") -> Path:
    """Draw the confusion matrix (colour: share of each true class; text: counts) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.1 * k + 1.8))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} accuracy {acc:.3f} (n={int(cm.sum())})".strip())
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part.png")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return path


class ConfusionMatrixSaver:
    """Ignite handler: accumulate predictions over an evaluation run and write the confusion matrix.

    Writes ``confusion_matrix.csv``, ``confusion_matrix.png`` and ``per_class.csv`` (precision, recall, F1,
    support) to ``output_dir`` when the run completes, and puts ``balanced_accuracy`` (mean recall over classes
    with samples) into ``engine.state.metrics`` so metric savers and loggers include it.

    Args:
        output_dir: destination folder.
        class_names: class names in label order.
        pred_key: output key of the class probabilities (or logits), ``(K,)`` per sample.
        label_key: output key of the class index.
        prefix: file name prefix (``val_`` during training).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        pred_key: str = "pred",
        label_key: str = "label",
        prefix: str = "",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.pred_key, self.label_key, self.prefix = pred_key, label_key, prefix
        self.preds: list[int] = []
        self.labels: list[int] = []
        self.matrix: np.ndarray | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.preds, self.labels = [], []

    def update(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in outputs:
            label = item.get(self.label_key)
            if label is None:
                continue
            pred = torch.as_tensor(item[self.pred_key])
            self.preds.append(int(pred.reshape(-1).argmax()))
            self.labels.append(
                int(
                    torch.as_tensor(label).reshape(-1).argmax()
                    if torch.as_tensor(label).numel() > 1
                    else torch.as_tensor(label).reshape(-1)[0]
                )
            )

    def write(self, engine: Engine) -> None:
        if not self.labels:
            return
        k = len(self.class_names)
        cm = confusion_matrix(np.asarray(self.labels), np.asarray(self.preds), k)
        self.matrix = cm
        scores = per_class_scores(cm)
        has = scores["support"] > 0
        balanced = float(scores["recall"][has].mean()) if has.any() else float("nan")
        engine.state.metrics["balanced_accuracy"] = balanced
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _write_csv(
            self.output_dir / f"{self.prefix}confusion_matrix.csv",
            [["true \\ predicted", *self.class_names]]
            + [[n, *map(int, row)] for n, row in zip(self.class_names, cm, strict=True)],
        )
        _write_csv(
            self.output_dir / f"{self.prefix}per_class.csv",
            [["class", "precision", "recall", "f1", "support"]]
            + [
                [n, f"{p:.4f}", f"{r:.4f}", f"{f:.4f}", int(s)]
                for n, p, r, f, s in zip(
                    self.class_names,
                    scores["precision"],
                    scores["recall"],
                    scores["f1"],
                    scores["support"],
                    strict=True,
                )
            ],
        )
        save_confusion_png(self.output_dir / f"{self.prefix}confusion_matrix.png", cm, self.class_names)
        logger.info("confusion matrix (rows true, columns predicted %s):\n%s", self.class_names, cm)


def _write_csv(path: Path, rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(rows)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
