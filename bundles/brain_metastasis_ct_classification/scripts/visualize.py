"""PNG of each patient's most suspicious slice with a Grad-CAM heat map (``monai.visualize.GradCAM``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.visualize import GradCAM

__all__ = ["SuspiciousSliceSaver", "save_suspicious_slice"]

logger = logging.getLogger(__name__)


def save_suspicious_slice(path: str | os.PathLike, image: np.ndarray, cam: np.ndarray | None, title: str) -> Path:
    """Save a two-panel PNG: the slice (z-scored brain, shown from -2.5 to 4 SD) and the slice with its heat map.

    Args:
        path: the PNG file.
        image: the slice ``(H, W)`` as the network sees it (RAS voxel axes: first left-right, second back-front).
        cam: Grad-CAM map ``(H, W)`` in [0, 1], or ``None``.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.asarray(image, dtype=np.float32).T[::-1, ::-1]  # (rows=anterior..posterior), radiological view
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for ax in axes:
        ax.imshow(shown, cmap="gray", vmin=-2.5, vmax=4.0)
        ax.axis("off")
    if cam is not None:
        axes[1].imshow(np.asarray(cam, dtype=np.float32).T[::-1, ::-1], cmap="jet", alpha=0.35, vmin=0, vmax=1)
    axes[0].set_title("most suspicious slice")
    axes[1].set_title("Grad-CAM (layer4)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)
    return path


class SuspiciousSliceSaver:
    """Ignite handler: for the first ``max_patients`` patients, save ``<patient>_slice<k>.png`` with Grad-CAM.

    It reads the patient's slice stack (``image``), the position of its most suspicious slice
    (``suspicious_pos``, from :class:`~scripts.engine.PatientPredictiond`) and its probability from the engine
    output, and runs ``monai.visualize.GradCAM`` on that slice.

    Args:
        network: the slice classifier.
        output_dir: folder of the PNGs.
        max_patients: how many patients to draw.
        target_layers: the layer Grad-CAM reads (``0.layer4``, the last ResNet-50 stage).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        output_dir: str | os.PathLike,
        max_patients: int = 8,
        target_layers: str = "0.layer4",
    ) -> None:
        self.network = network
        self.output_dir = Path(output_dir)
        self.max_patients = int(max_patients)
        self.target_layers = target_layers
        self.saved = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.saved = 0

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        output = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for b, o in zip(batch, output, strict=True):
            if self.saved >= self.max_patients:
                return
            stack = torch.as_tensor(o["image"]).float()
            pos = int(o.get("suspicious_pos", 0))
            x = stack[pos][None, None].to(next(self.network.parameters()).device)
            net = getattr(self.network, "module", self.network)
            try:
                with torch.enable_grad():
                    cam = GradCAM(nn_module=net, target_layers=self.target_layers)(x)
                cam_map = cam[0, 0].detach().float().cpu().numpy()
            except Exception as err:  # a heat map is a convenience: never fail the evaluation for it
                logger.warning(f"Grad-CAM failed ({type(err).__name__}: {err}); saving the slice without it")
                cam_map = None
            patient = str(b.get("patient_id", f"patient{self.saved}"))
            label = o.get("label", b.get("label"))
            label_text = "" if label is None else f", label {int(float(np.asarray(label).reshape(-1)[0]) > 0.5)}"
            title = f"{patient}: p={float(o['probability']):.3f}{label_text}, series slice {int(o['suspicious_slice'])}"
            save_suspicious_slice(
                self.output_dir / f"{patient}_slice{int(o['suspicious_slice'])}.png",
                stack[pos].cpu().numpy(),
                cam_map,
                title,
            )
            self.saved += 1
