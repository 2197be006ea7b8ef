"""TorchScript and ONNX exports of a bundle's network, checked against PyTorch on the same input.

``export_network`` builds ``network_def`` from the bundle's inference config (plus any variant files), loads the
weights weights-only, and writes ``model.ts`` (``monai.networks.utils.convert_to_torchscript``) and ``model.onnx``
(``monai.networks.utils.convert_to_onnx``, dynamic batch axis). Each export is run on one random input of the
bundle's input shape and compared with eager PyTorch; the maximum absolute difference is reported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundles import bundle_imports, bundle_path, config_files

__all__ = ["build_network", "example_input", "export_network"]


def build_network(
    bundle: str | os.PathLike,
    configs: Sequence[str] = ("inference",),
    ckpt: str | os.PathLike | None = None,
    **overrides: Any,
) -> torch.nn.Module:
    """``network_def`` of a bundle's merged configs, in eval mode, with weights from ``ckpt`` when given.

    Args:
        bundle: a bundle name in ``bundles/`` or a bundle folder.
        configs: config names merged in order.
        ckpt: weights (a state dict, or a checkpoint holding one under ``model``).
        overrides: config overrides, for example the network width of a smoke profile.
    """
    from monai.bundle import ConfigParser

    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    parser = ConfigParser()
    parser.read_config(config_files(root, configs))
    parser["bundle_root"] = str(root)
    for key, value in overrides.items():
        parser[key] = value
    with bundle_imports(root):
        net = parser.get_parsed_content("network_def")
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        net.load_state_dict(state)
    return net.eval()


def example_input(bundle: str | os.PathLike, configs: Sequence[str] = ("inference",), batch: int = 1) -> torch.Tensor:
    """A random input of the bundle's network: the ``patch_size`` (or ``spatial_size``) of its merged configs, else
    the ``network_data_format`` input shape of its metadata with ``n=2``."""
    from monai.bundle import ConfigParser

    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    spec = next(iter(meta["network_data_format"]["inputs"].values()))
    parser = ConfigParser()
    parser.read_config(config_files(root, configs))
    shape = None
    for key in ("patch_size", "spatial_size", "image_size"):
        if key in parser and isinstance(parser[key], list):
            shape = [int(s) for s in parser[key]]
            break
    if shape is None:
        shape = [int(eval(str(s).replace("n", "2"), {})) for s in spec["spatial_shape"]]
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, int(spec["num_channels"]), *shape, generator=generator)


def export_network(
    bundle: str | os.PathLike,
    out_dir: str | os.PathLike,
    configs: Sequence[str] = ("inference",),
    ckpt: str | os.PathLike | None = None,
    formats: Sequence[str] = ("torchscript", "onnx"),
) -> dict:
    """Export a bundle's network and check each export against eager PyTorch.

    Args:
        bundle: bundle name or folder.
        out_dir: where ``model.ts`` and ``model.onnx`` go.
        configs: config files merged to build the network (the variant the weights were trained with).
        ckpt: weights; default ``<bundle>/models/model.pt`` if it exists, else the freshly initialised network.
        formats: any of ``torchscript`` and ``onnx``.

    Returns:
        paths of the exports and the maximum absolute difference of each against PyTorch.
    """
    from monai.networks.utils import convert_to_onnx, convert_to_torchscript

    root = Path(bundle) if Path(bundle).is_dir() else bundle_path(str(bundle))
    if ckpt is None and (root / "models" / "model.pt").is_file():
        ckpt = root / "models" / "model.pt"
    net = build_network(root, configs, ckpt)
    x = example_input(root, configs)
    with torch.no_grad():
        reference = net(x).numpy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "bundle": root.name,
        "configs": list(configs),
        "weights": str(ckpt) if ckpt else "initial",
        "input_shape": list(x.shape),
    }
    if "torchscript" in formats:
        path = out / "model.ts"
        scripted = convert_to_torchscript(net, filename_or_obj=str(path))
        with torch.no_grad():
            report["torchscript"] = {
                "path": str(path),
                "max_abs_diff": float(np.abs(scripted(x).numpy() - reference).max()),
            }
    if "onnx" in formats:
        import onnxruntime as ort

        path = out / "model.onnx"
        convert_to_onnx(
            net,
            inputs=[x],
            input_names=["image"],
            output_names=["pred"],
            filename=str(path),
            dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}},
            use_trace=True,
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (onnx_out,) = session.run(None, {"image": x.numpy()})[:1]
        report["onnx"] = {"path": str(path), "max_abs_diff": float(np.abs(onnx_out - reference).max())}
    return report
