"""Evaluation and training PNGs: confusion matrix, ROC curves, input / ground truth / prediction, training curves.

Every PNG and CSV is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import LoadImage, Orientation

from .metrics import _positives, class_histograms, roc_from_histograms

__all__ = ["SegmentationReport", "TrainingCurves", "save_figure"]

logger = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Save a matplotlib figure atomically and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        _plt().close(fig)
        if tmp.exists():
            tmp.unlink()
    return path


def _labels(x: torch.Tensor) -> torch.Tensor:
    """Label map ``(...)`` from a one-hot ``(C, ...)`` or a label map ``(1, ...)``."""
    return x.argmax(0) if x.shape[0] > 1 else x[0].round().long()


def _display(image: np.ndarray, window: Sequence[float] | None) -> np.ndarray:
    lo, hi = window if window is not None else np.percentile(image, (1, 99))
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)


class SegmentationReport:
    """Ignite handler for an evaluator: confusion matrix, ROC curves and example PNGs of a segmentation run.

    It reads ``pred`` (one-hot or label map), ``label`` and, for the ROC curves, ``probs`` (class probabilities)
    from each output item, all in the same grid. For the example PNGs it reloads the input named in the
    prediction's metadata and orients everything to RAS, so it works after ``Invertd``.

    Writes, into ``output_dir``: ``confusion_matrix.png`` and ``confusion_matrix.csv`` (pixels, rows = ground
    truth), ``roc_curves.png`` (one curve per foreground class, with its AUC) and
    ``examples/<case>.png`` (input, ground truth, prediction on the axial slice with the most foreground).

    Args:
        output_dir: destination folder.
        class_names: names by class index, background first.
        max_cases: cases drawn as example PNGs.
        window: intensity window of the input display (HU for CT); ``None`` for the 1st-99th percentiles.
        bins: probability levels of the ROC histograms.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        max_cases: int = 4,
        window: Sequence[float] | None = None,
        bins: int = 1000,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = list(class_names)
        self.max_cases = max_cases
        self.window = window
        self.bins = bins
        self._load = LoadImage(image_only=True, ensure_channel_first=True)
        self._ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
        self.reset()

    def reset(self) -> None:
        n = len(self.class_names)
        self.confusion = np.zeros((n, n), dtype=np.int64)
        self.pos = np.zeros((n, self.bins))
        self.neg = np.zeros((n, self.bins))
        self.saved = 0
        self._names: set[str] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def update(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        n = len(self.class_names)
        for item in outputs:
            pred, label = _labels(item["pred"]), _labels(item["label"]).to(item["pred"].device)
            idx = (label.flatten().long() * n + pred.flatten().long()).cpu()
            self.confusion += torch.bincount(idx, minlength=n * n).reshape(n, n).numpy()
            probs = item.get("probs")
            if probs is not None:
                for c in range(1, n):
                    pos, neg = class_histograms(probs[c], _positives(item["label"], c).to(probs.device), self.bins)
                    self.pos[c] += pos.numpy()
                    self.neg[c] += neg.numpy()
            if self.saved < self.max_cases:
                self._example(item["pred"], item["label"])

    def _example(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        source = pred.meta.get("filename_or_obj") if hasattr(pred, "meta") else None
        if not source:
            return
        image = np.asarray(self._ras(self._load(source))[0], dtype=np.float32)
        pred_map = np.asarray(self._ras(pred)[0 if pred.shape[0] == 1 else slice(None)].cpu())
        label_map = np.asarray(self._ras(label.to(pred.device))[0 if label.shape[0] == 1 else slice(None)].cpu())
        pred_map = pred_map.argmax(0) if pred_map.ndim == 4 else pred_map
        label_map = label_map.argmax(0) if label_map.ndim == 4 else label_map
        if image.shape != label_map.shape:
            return
        k = int(np.argmax((label_map > 0).sum(axis=(0, 1)) + (pred_map > 0).sum(axis=(0, 1))))
        path = Path(str(source).rstrip("/"))
        name = path.name.split(".")[0]
        if name in self._names or name in ("ct", "image", "imaging"):
            name = f"{path.parent.name}_{name}"  # TotalSegmentator subjects: <subject>/ct.nii.gz
        self._names.add(name)
        plt = _plt()
        from matplotlib.colors import ListedColormap

        n = len(self.class_names)
        cmap = ListedColormap(plt.get_cmap("tab10")(np.arange(max(n - 1, 1)) % 10))
        fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
        base = _display(image[:, :, k], self.window).T[::-1, ::-1]  # radiological view: anterior up, left on right
        for ax, lab, title in zip(
            axes, (None, label_map, pred_map), ("input", "ground truth", "prediction"), strict=True
        ):
            ax.imshow(base, cmap="gray")
            if lab is not None:
                shown = np.ma.masked_equal(lab[:, :, k].T[::-1, ::-1].astype(np.float32), 0)
                ax.imshow(shown - 1, cmap=cmap, vmin=0, vmax=max(n - 2, 1), alpha=0.5, interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
        handles = [plt.Rectangle((0, 0), 1, 1, color=cmap((c - 1) / max(n - 2, 1))) for c in range(1, n)]
        fig.legend(handles, self.class_names[1:], loc="lower center", ncol=min(n - 1, 6), fontsize=8)
        fig.suptitle(f"{name} (axial slice {k})")
        save_figure(fig, self.output_dir / "examples" / f"{name}.png")
        self.saved += 1

    def write(self, engine: Engine | None = None) -> None:
        plt = _plt()
        names = self.class_names
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.output_dir / f".confusion_matrix.{os.getpid()}.part.csv"
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ground_truth \\ prediction", *names])
            for name, row in zip(names, self.confusion, strict=True):
                writer.writerow([name, *row.tolist()])
        os.replace(tmp, self.output_dir / "confusion_matrix.csv")

        rows = self.confusion.sum(axis=1, keepdims=True)
        share = np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0)
        fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 1.1 * len(names) + 1.5))
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("prediction")
        ax.set_ylabel("ground truth")
        ax.set_title("confusion matrix (share of each ground-truth class, pixels)")
        fig.tight_layout()
        save_figure(fig, self.output_dir / "confusion_matrix.png")

        if self.pos[1:].sum() > 0:
            fig, ax = plt.subplots(figsize=(5.5, 5))
            for c in range(1, len(names)):
                fpr, tpr, auc = roc_from_histograms(self.pos[c], self.neg[c])
                if not math.isnan(auc):
                    ax.plot(fpr, tpr, label=f"{names[c]} (AUC {auc:.4f})")
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title("ROC per class (pixels)")
            ax.legend(loc="lower right", fontsize=8)
            fig.tight_layout()
            save_figure(fig, self.output_dir / "roc_curves.png")


class TrainingCurves:
    """Ignite handler for a trainer: training loss per epoch, and validation loss and metric when validated.

    Writes ``training_curve.csv`` and ``training_curve.png`` into ``output_dir`` after every epoch. When training
    resumes, the rows of earlier epochs already in the CSV are kept.

    Args:
        output_dir: destination folder.
        validator: the evaluator run by ``ValidationHandler`` (its metrics are read when it completes).
        metric: validation metric drawn in the second panel.
        loss_metric: validation metric holding the validation loss (drawn beside the training loss), if any.
    """

    def __init__(
        self,
        output_dir: str,
        validator: Engine | None = None,
        metric: str = "val_mean_dice",
        loss_metric: str | None = "val_loss",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.metric = metric
        self.loss_metric = loss_metric
        self.rows: dict[int, dict] = {}
        self._previous: dict[int, dict] = {}
        self._losses: list[float] = []
        self._trainer: Engine | None = None

    def attach(self, trainer: Engine) -> None:
        self._trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        if self.validator is not None:
            self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

    @property
    def csv_path(self) -> Path:
        return self.output_dir / "training_curve.csv"

    def _started(self, trainer: Engine) -> None:
        # the checkpoint loader may set ``trainer.state.epoch`` after this handler: keep the earlier rows aside and
        # merge those before the first epoch this run completes (``_merge_previous``)
        self.rows = {}
        self._previous = {}
        if self.csv_path.is_file():
            with open(self.csv_path) as f:
                for row in csv.DictReader(f):
                    epoch = int(row["epoch"])
                    values = {k: float(v) if v not in ("", None) else None for k, v in row.items()}
                    self._previous[epoch] = {**values, "epoch": epoch}

    def _merge_previous(self, epoch: int) -> None:
        for e, row in (self._previous or {}).items():
            if e < epoch:
                self.rows.setdefault(e, row)
        self._previous = {}

    def _iteration(self, trainer: Engine) -> None:
        output = trainer.state.output
        output = output[0] if isinstance(output, list) else output
        if isinstance(output, dict) and "loss" in output:
            self._losses.append(float(output["loss"]))

    def _validated(self, validator: Engine) -> None:
        if self._trainer is None:
            return
        self._merge_previous(self._trainer.state.epoch)
        row = self.rows.setdefault(self._trainer.state.epoch, {"epoch": self._trainer.state.epoch})
        row[self.metric] = float(validator.state.metrics.get(self.metric, float("nan")))
        if self.loss_metric:
            row[self.loss_metric] = float(validator.state.metrics.get(self.loss_metric, float("nan")))

    def _epoch(self, trainer: Engine) -> None:
        self._merge_previous(trainer.state.epoch)
        row = self.rows.setdefault(trainer.state.epoch, {"epoch": trainer.state.epoch})
        row["train_loss"] = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        self.write()

    def write(self) -> None:
        columns = ["epoch", "train_loss", *([self.loss_metric] if self.loss_metric else []), self.metric]
        epochs = sorted(self.rows)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.output_dir / f".training_curve.{os.getpid()}.part.csv"
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for e in epochs:
                writer.writerow([self.rows[e].get(c, "") if self.rows[e].get(c) is not None else "" for c in columns])
        os.replace(tmp, self.csv_path)
        plt = _plt()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))

        def series(key: str) -> tuple[list, list]:
            pts = [(e, self.rows[e][key]) for e in epochs if self.rows[e].get(key) is not None]
            pts = [(e, v) for e, v in pts if not math.isnan(v)]
            return [p[0] for p in pts], [p[1] for p in pts]

        ax1.plot(*series("train_loss"), marker=".", label="training loss")
        if self.loss_metric:
            ax1.plot(*series(self.loss_metric), marker="o", label="validation loss")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        ax2.plot(*series(self.metric), marker="o", color="tab:green")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel(self.metric)
        ax2.set_ylim(0, 1)
        fig.tight_layout()
        save_figure(fig, self.output_dir / "training_curve.png")
