"""Class activation map overlays (``monai.visualize``) for a classification evaluator.

For each image the Grad-CAM of the layer before global pooling (``layer4`` of a ResNet) is computed for the
predicted class (or a fixed class), upsampled to the network input, and saved as a two-panel PNG: the radiograph
as the network saw it, and the same with the map blended in (``monai.visualize.blend_images``, jet colours).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.visualize import CAM, GradCAM, GradCAMpp, blend_images

__all__ = ["CAMSaver", "image_stem", "save_cam_overlay"]

logger = logging.getLogger(__name__)

_METHODS = {"GradCAM": GradCAM, "GradCAMpp": GradCAMpp, "CAM": CAM}


_IMAGE_SUFFIXES = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def image_stem(path: str | os.PathLike) -> str:
    """File name without an image extension, keeping the dots of DICOM UIDs (``1.2.840.1.dcm`` -> ``1.2.840.1``).

    Args:
        path: the image file.

    Examples:
        >>> image_stem("/data/1.3.6.1.4.1.9590.100.1.dcm"), image_stem("scan.PNG"), image_stem("IM0001")
        ('1.3.6.1.4.1.9590.100.1', 'scan', 'IM0001')
    """
    name = Path(str(path)).name
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in _IMAGE_SUFFIXES else name


def save_cam_overlay(path: str | os.PathLike, image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> Path:
    """Write ``[image | image + cam]`` as an RGB PNG, atomically.

    Args:
        path: destination ``.png``.
        image: ``(H, W)`` intensities in 0..1.
        cam: ``(H, W)`` activation map in 0..1.
        alpha: weight of the map in the blend.
    """
    from PIL import Image

    img = np.clip(np.asarray(image, dtype=np.float32), 0, 1)[None]
    heat = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)[None]
    blended = blend_images(img, heat, alpha=alpha, cmap="jet", rescale_arrays=False)
    grey = np.repeat(img, 3, axis=0)
    panel = np.concatenate([grey, np.asarray(blended)], axis=2)  # (3, H, 2W)
    rgb = (np.clip(panel.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part.png")
    try:
        Image.fromarray(rgb).save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class CAMSaver:
    """Ignite handler: after each evaluator iteration, save CAM overlays of the batch's images.

    The output path is put in each output item under ``"cam"`` (a prediction writer attached after this handler
    can list it).

    Args:
        network: the evaluated network.
        output_dir: folder of the ``<image name>_cam.png`` files.
        target_layers: the layer whose activations are mapped (``layer4`` for MONAI's ResNet).
        method: ``GradCAM``, ``GradCAMpp`` or ``CAM`` (``CAM`` needs ``fc_layers``, ``fc`` for a ResNet).
        class_index: the class to explain; ``None`` explains each image's predicted class.
        max_images: stop after this many images (``None``: all).
        image_key: output key of the network input.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        output_dir: str,
        target_layers: str = "layer4",
        method: str = "GradCAM",
        class_index: int | None = None,
        max_images: int | None = None,
        image_key: str = "image",
        fc_layers: str = "fc",
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"unknown CAM method {method!r}; expected one of {', '.join(_METHODS)}")
        net = network.module if hasattr(network, "module") else network
        kwargs = {"fc_layers": fc_layers} if method == "CAM" else {}
        self.cam = _METHODS[method](nn_module=net, target_layers=target_layers, **kwargs)
        self.network = net
        self.output_dir = Path(output_dir)
        self.class_index = class_index
        self.max_images = max_images
        self.image_key = image_key
        self.saved: list[Path] = []
        self._names: set[str] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self.saved, self._names = [], set()

    def _name(self, item: dict, index: int) -> str:
        image = item.get(self.image_key)
        source = image.meta.get("filename_or_obj", "") if hasattr(image, "meta") else ""
        stem = image_stem(source) if source else f"image_{index:05d}"
        name, k = stem, 1
        while name in self._names:
            k += 1
            name = f"{stem}_{k}"
        self._names.add(name)
        return name

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        if self.max_images is not None:
            outputs = outputs[: max(0, self.max_images - len(self.saved))]
        if not outputs:
            return
        x = torch.stack([torch.as_tensor(item[self.image_key]) for item in outputs]).float()
        device = next(self.network.parameters()).device
        with torch.enable_grad():
            maps = self.cam(x.to(device), class_idx=self.class_index)
        maps = maps.detach().float().cpu().numpy()
        for i, item in enumerate(outputs):
            name = self._name(item, len(self.saved))
            image = np.asarray(torch.as_tensor(item[self.image_key]).float().cpu())[0]
            path = save_cam_overlay(self.output_dir / f"{name}_cam.png", image, maps[i, 0])
            item["cam"] = str(path)
            self.saved.append(path)
