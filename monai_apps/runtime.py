"""Run an exported ONNX network with ONNX Runtime behind the ``torch.nn.Module`` interface MONAI's inferers call.

The shared profile ``configs/onnx_runtime.json`` swaps a bundle's ``network`` for :class:`OnnxRuntimeNetwork`, so
the bundle's own preprocessing, sliding-window inferer and post-processing run unchanged around ONNX Runtime.
"""

from __future__ import annotations

import os

import numpy as np
import torch

__all__ = ["OnnxRuntimeNetwork"]


class OnnxRuntimeNetwork(torch.nn.Module):
    """A ``torch.nn.Module`` whose forward runs an ONNX model in an ONNX Runtime CPU session.

    Args:
        path: the ``.onnx`` file.
        num_threads: intra-op threads (default: ``torch.get_num_threads()``).

    Example::

        net = OnnxRuntimeNetwork("models/model.onnx")
        logits = net(torch.rand(1, 1, 96, 96, 64))
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: ONNX model not found (export it with `python -m monai_apps export`)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or torch.get_num_threads())
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (out,) = self.session.run(None, {self.input_name: array})[:1]
        return torch.from_numpy(out).to(x.device)
