"""2.5D input: each axial slice with its neighbours as channels, for training slices and whole-volume inference.

A nodule of 5-10 mm and a vessel seen end-on look alike in one slice; the slices above and below tell them apart
(a vessel runs on, a nodule ends). With ``context_slices = c`` the network sees ``2c + 1`` channels, slices
``k - c .. k + c`` (the end slices repeated at the top and bottom of the volume), and predicts slice ``k``. The
slices must be prepared with the same context (``python -m monai_apps slices ... --context c``); ``c = 0`` is the
plain 2D bundle with MONAI's :class:`~monai.inferers.SliceInferer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SliceInferer
from monai.utils import convert_to_dst_type

from .datalist import read_datalist, slice_datalist
from .inputs import InputError

__all__ = ["ContextSliceInferer", "context_slice_datalist", "slice_inferer"]


class ContextSliceInferer(Inferer):
    """Run a 2D network over the axial slices of ``(B, C, H, W, D)`` volumes with ``context`` neighbours a side.

    Slice ``k`` is predicted from the ``C * (2 * context + 1)`` channels of slices ``k - context .. k + context``
    (channel-major: all slices of channel 0 first), clamped at the ends of the volume, as
    ``monai_apps.data.slices`` prepares them for training.

    Args:
        context: neighbouring slices on each side (0: one slice, as ``SliceInferer`` with a whole-slice ROI).
        sw_batch_size: slices per forward pass.

    Example::

        inferer = ContextSliceInferer(context=1, sw_batch_size=16)
        net = BasicUNet(spatial_dims=2, in_channels=3, out_channels=1)
        pred = inferer(torch.rand(1, 1, 128, 128, 40), net)  # (1, 1, 128, 128, 40)
    """

    def __init__(self, context: int = 1, sw_batch_size: int = 16) -> None:
        super().__init__()
        if int(context) < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if int(sw_batch_size) < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.context = int(context)
        self.sw_batch_size = int(sw_batch_size)

    def stack(self, volume: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """The network inputs ``(stop - start, C * (2c + 1), H, W)`` of slices ``start..stop-1`` of ``(C, H, W, D)``."""
        channels, height, width, depth = volume.shape
        offsets = torch.arange(-self.context, self.context + 1, device=volume.device)
        index = (torch.arange(start, stop, device=volume.device)[:, None] + offsets).clamp(0, depth - 1)
        slab = volume[..., index.reshape(-1)].reshape(channels, height, width, stop - start, index.shape[1])
        return slab.permute(3, 0, 4, 1, 2).reshape(stop - start, -1, height, width).contiguous()

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim != 5:
            raise ValueError(f"expected a (B, C, H, W, D) volume, got shape {tuple(inputs.shape)}")
        outputs = []
        for volume in inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs:
            depth = volume.shape[-1]
            preds = [
                torch.as_tensor(network(self.stack(volume, s, min(s + self.sw_batch_size, depth)), *args, **kwargs))
                for s in range(0, depth, self.sw_batch_size)
            ]
            outputs.append(torch.cat(preds).permute(1, 2, 3, 0))
        return convert_to_dst_type(torch.stack(outputs).float(), inputs, dtype=torch.float32)[0]


def slice_inferer(roi_size: list[int], sw_batch_size: int = 16, context: int = 0) -> Inferer:
    """MONAI's ``SliceInferer`` over whole axial slices for ``context == 0``, else :class:`ContextSliceInferer`."""
    if int(context) == 0:
        return SliceInferer(roi_size=roi_size, spatial_dim=2, sw_batch_size=sw_batch_size, progress=False)
    return ContextSliceInferer(context=context, sw_batch_size=sw_batch_size)


def context_slice_datalist(datalist_file: str | os.PathLike, context: int = 0, **kwargs: Any) -> list[dict]:
    """:func:`~scripts.datalist.slice_datalist` after checking that the slices were prepared with ``context``.

    Raises:
        InputError: the slices hold another number of neighbouring slices than the bundle's ``context_slices``.
    """
    data = read_datalist(datalist_file)
    prepared = int(data.get("settings", {}).get("context", 0)) if isinstance(data, dict) else 0
    if prepared != int(context):
        raise InputError(
            f"{datalist_file}: slices prepared with context {prepared} but context_slices is {context} "
            f"(prepare them with --context {context}, or set context_slices {prepared})"
        )
    return slice_datalist(datalist_file, **kwargs)
