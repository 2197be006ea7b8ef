"""Overlay PNGs of a few evaluated cases: CT slice with ground truth and prediction side by side."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import LoadImage, Orientation
from monai.visualize import blend_images

__all__ = ["OverlaySaver", "pick_slice", "save_overlay"]

logger = logging.getLogger(__name__)


def pick_slice(label: np.ndarray, pred: np.ndarray) -> int:
    """The axial slice with the most tumour (label 2) in label or prediction, else the most liver."""
    for value in (2, 1):
        counts = ((label == value) | (pred == value)).sum(axis=(0, 1))
        if counts.max() > 0:
            return int(np.argmax(counts))
    return label.shape[-1] // 2


def save_overlay(
    path: str | os.PathLike, image: np.ndarray, label: np.ndarray, pred: np.ndarray, title: str, window=(-100, 250)
) -> Path:
    """Save one axial slice of ``image`` blended with ``label`` and with ``pred`` as a two-panel PNG.

    All arrays are ``(X, Y, Z)`` in RAS orientation; the slice is shown in radiological view (patient's left on the
    right, anterior up).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = pick_slice(label, pred)
    lo, hi = window
    img = np.clip((image[..., k] - lo) / (hi - lo), 0, 1)[None]
    panels = []
    for lab in (label, pred):
        # label 1 (liver) -> 0.5 (cyan in "hsv"), label 2 (tumour) -> 1.0 (red)
        colours = lab[None, ..., k].astype(np.float32) / 2.0
        rgb = blend_images(img, colours, alpha=0.45, cmap="hsv", rescale_arrays=False)
        panels.append(np.asarray(rgb).transpose(2, 1, 0)[::-1, ::-1])  # (Y, X, RGB), radiological view
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    for ax, panel, name in zip(axes, panels, ("ground truth", "prediction"), strict=True):
        ax.imshow(np.clip(panel, 0, 1))
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(f"{title} (slice {k})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class OverlaySaver:
    """Ignite handler: after each evaluation iteration, save overlay PNGs of the first ``max_cases`` cases.

    It reads ``pred`` and ``label`` (one-hot or label maps, in the geometry of the input image) from the engine
    output and reloads the input image named in the prediction's metadata, so it works after ``Invertd``.

    Args:
        output_dir: folder for the PNGs (``<case>_overlay.png``).
        max_cases: how many cases to draw.
        window: HU window of the CT display.
    """

    def __init__(self, output_dir: str, max_cases: int = 4, window: tuple[float, float] = (-100, 250)) -> None:
        self.output_dir = Path(output_dir)
        self.max_cases = max_cases
        self.window = window
        self.saved = 0
        self._load = LoadImage(image_only=True, ensure_channel_first=True)
        self._ras = Orientation(axcodes="RAS")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    @staticmethod
    def _labels(x: torch.Tensor) -> torch.Tensor:
        return x.argmax(0, keepdim=True) if x.shape[0] > 1 else x

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in outputs:
            if self.saved >= self.max_cases:
                return
            pred = self._labels(item["pred"])
            source = pred.meta.get("filename_or_obj") if hasattr(pred, "meta") else None
            if not source:
                return
            image = self._ras(self._load(source))
            label = self._ras(self._labels(item["label"]).to(pred.device))
            pred = self._ras(pred)
            name = Path(str(source)).name.split(".")[0]
            save_overlay(
                self.output_dir / f"{name}_overlay.png",
                np.asarray(image[0], dtype=np.float32),
                np.asarray(label[0].cpu(), dtype=np.uint8),
                np.asarray(pred[0].cpu(), dtype=np.uint8),
                title=name,
                window=self.window,
            )
            self.saved += 1
