"""A U-Net with a MobileNetV3-Large encoder, written here because torchvision and timm cannot be installed.

The encoder reproduces timm's ``mobilenetv3_large_100`` layer for layer, with the same module names, so an
ImageNet state dict saved from timm (``timm.create_model("mobilenetv3_large_100", pretrained=True).state_dict()``)
loads into it key for key (:func:`load_timm_mobilenetv3`). It is registered as a ``FlexibleUNet`` backbone named
``mobilenetv3_large_100``; the decoder is MONAI's ``FlexibleUNet`` decoder (the segmentation_models.pytorch U-Net
decoder, channels 256-128-64-32-16). Its five feature maps (strides 2, 4, 8, 16, 32; 16, 24, 40, 112, 960 channels)
are those of timm's ``features_only`` model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from monai.networks.blocks import BaseEncoder
from monai.networks.nets import FlexibleUNet
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

__all__ = [
    "MOBILENETV3_LARGE_STAGES",
    "MobileNetV3Encoder",
    "MobileNetV3UNet",
    "load_timm_mobilenetv3",
]

logger = logging.getLogger(__name__)

#: timm ``mobilenetv3_large_100`` stages: (block type, kernel, stride, expansion, out channels, SE, activation)
#: per block; ``ds`` depthwise-separable, ``ir`` inverted residual, ``cn`` 1x1 conv + BN + act.
MOBILENETV3_LARGE_STAGES: list[list[tuple[str, int, int, float, int, bool, str]]] = [
    [("ds", 3, 1, 1.0, 16, False, "relu")],
    [("ir", 3, 2, 4.0, 24, False, "relu"), ("ir", 3, 1, 3.0, 24, False, "relu")],
    [("ir", 5, 2, 3.0, 40, True, "relu"), ("ir", 5, 1, 3.0, 40, True, "relu"), ("ir", 5, 1, 3.0, 40, True, "relu")],
    [
        ("ir", 3, 2, 6.0, 80, False, "hard_swish"),
        ("ir", 3, 1, 2.5, 80, False, "hard_swish"),
        ("ir", 3, 1, 2.3, 80, False, "hard_swish"),
        ("ir", 3, 1, 2.3, 80, False, "hard_swish"),
    ],
    [("ir", 3, 1, 6.0, 112, True, "hard_swish")] * 2,
    [
        ("ir", 5, 2, 6.0, 160, True, "hard_swish"),
        ("ir", 5, 1, 6.0, 160, True, "hard_swish"),
        ("ir", 5, 1, 6.0, 160, True, "hard_swish"),
    ],
    [("cn", 1, 1, 1.0, 960, False, "hard_swish")],
]
#: stages whose outputs feed the decoder (strides 2, 4, 8, 16, 32)
FEATURE_STAGES = (0, 1, 2, 4, 6)
FEATURE_CHANNELS = (16, 24, 40, 112, 960)
#: timm keys of the classification head, not part of the encoder
HEAD_PREFIXES = ("conv_head.", "classifier.")


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's channel rounding: the nearest multiple of ``divisor``, never more than 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def _act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


class SqueezeExcite(nn.Module):
    """timm ``SqueezeExcite`` of MobileNetV3: mean pool, 1x1 reduce, ReLU, 1x1 expand, hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = make_divisible(channels * 0.25)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.conv_expand(self.act1(self.conv_reduce(s))))


class DepthwiseSeparableConv(nn.Module):
    """timm ``DepthwiseSeparableConv``: depthwise conv, BN, act, (SE), pointwise conv, BN, residual."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, se: bool, act: str) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, kernel // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = _act(act)
        self.se = SqueezeExcite(in_chs) if se else nn.Identity()
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_pw(self.se(self.act1(self.bn1(self.conv_dw(x))))))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    """timm ``InvertedResidual``: 1x1 expand, BN, act, depthwise conv, BN, act, (SE), 1x1 project, BN, residual."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, exp: float, se: bool, act: str) -> None:
        super().__init__()
        mid = make_divisible(in_chs * exp)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = _act(act)
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = _act(act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.se(self.act2(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


class ConvBnAct(nn.Module):
    """timm ``ConvBnAct``: 1x1 conv, BN, act."""

    def __init__(self, in_chs: int, out_chs: int, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class MobileNetV3Encoder(nn.Module, BaseEncoder):
    """MobileNetV3-Large (timm ``mobilenetv3_large_100``) as a ``FlexibleUNet`` encoder: five feature maps.

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (3 for grayscale stacked to RGB as in the published recipe, or 1).
        pretrained: must be ``False``; nothing downloads. Load ImageNet weights from a local file with
            :func:`load_timm_mobilenetv3` (``MobileNetV3UNet(pretrained_path=...)`` does).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, pretrained: bool = False) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"MobileNetV3Encoder is 2D only, got spatial_dims={spatial_dims}")
        if pretrained:
            raise ValueError("pretrained=True would download weights; give a local state dict as pretrained_path")
        self.in_channels = in_channels
        self.conv_stem = nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.Hardswish(inplace=True)
        stages, chs = [], 16
        for stage in MOBILENETV3_LARGE_STAGES:
            blocks = []
            for kind, k, s, e, out, se, act in stage:
                if kind == "ds":
                    blocks.append(DepthwiseSeparableConv(chs, out, k, s, se, act))
                elif kind == "ir":
                    blocks.append(InvertedResidual(chs, out, k, s, e, se, act))
                else:
                    blocks.append(ConvBnAct(chs, out, act))
                chs = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        f0 = self.blocks[0](x)
        f1 = self.blocks[1](f0)
        f2 = self.blocks[2](f1)
        f4 = self.blocks[4](self.blocks[3](f2))
        f6 = self.blocks[6](self.blocks[5](f4))
        return [f0, f1, f2, f4, f6]

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [{"spatial_dims": 2, "in_channels": 3, "pretrained": False}]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        return [FEATURE_CHANNELS]

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [len(FEATURE_CHANNELS)]

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return ["mobilenetv3_large_100"]


if "mobilenetv3_large_100" not in FLEXUNET_BACKBONE.register_dict:
    FLEXUNET_BACKBONE.register_class(MobileNetV3Encoder)


def _adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """timm's ``adapt_input_conv``: RGB stem weights for 1 channel (sum) or N channels (tiled, rescaled)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def load_timm_mobilenetv3(encoder: MobileNetV3Encoder, path: str | os.PathLike, strict: bool = True) -> dict:
    """Load a timm ``mobilenetv3_large_100`` state dict from a local file into ``encoder``.

    The file may hold the state dict itself or a dict with ``state_dict``/``model``; ``module.`` and ``model.``
    key prefixes (DataParallel, segmentation_models.pytorch) are stripped. The classification head
    (``conv_head``, ``classifier``) is ignored. RGB stem weights are summed for a 1-channel encoder. The file is
    read with ``weights_only=True`` (no pickled code).

    Args:
        encoder: the encoder to fill.
        path: the ``.pt``/``.pth`` file.
        strict: raise when encoder keys are missing, keys are unexpected or shapes differ; otherwise log them.

    Returns:
        ``{"loaded": n, "missing": [...], "unexpected": [...], "mismatched": [...], "ignored_head": [...]}``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: (``strict``) the file is not a ``mobilenetv3_large_100`` state dict; the message names the
            file and lists the missing, unexpected and mismatched keys.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: pretrained weights file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict (got {type(state).__name__})")
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "model.", "encoder."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    ignored = sorted(k for k in cleaned if k.startswith(HEAD_PREFIXES))
    own = encoder.state_dict()
    if "conv_stem.weight" in cleaned and cleaned["conv_stem.weight"].ndim == 4:
        cleaned["conv_stem.weight"] = _adapt_stem(cleaned["conv_stem.weight"], encoder.in_channels)
    missing = sorted(k for k in own if k not in cleaned)
    unexpected = sorted(k for k in cleaned if k not in own and k not in ignored)
    mismatched = sorted(
        f"{k}: file {tuple(cleaned[k].shape)} vs encoder {tuple(own[k].shape)}"
        for k in own
        if k in cleaned and tuple(cleaned[k].shape) != tuple(own[k].shape)
    )
    report = {"missing": missing, "unexpected": unexpected, "mismatched": mismatched, "ignored_head": ignored}
    if missing or unexpected or mismatched:

        def _few(items: Sequence[str]) -> str:
            return ", ".join(items[:4]) + (f" ... (+{len(items) - 4})" if len(items) > 4 else "")

        message = (
            f"{path}: not a timm mobilenetv3_large_100 state dict: {len(missing)} missing [{_few(missing)}], "
            f"{len(unexpected)} unexpected [{_few(unexpected)}], {len(mismatched)} with other shapes "
            f"[{_few(mismatched)}]"
        )
        if strict:
            raise ValueError(message)
        logger.warning(message)
    loadable = {k: v for k, v in cleaned.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    encoder.load_state_dict(loadable, strict=False)
    report["loaded"] = len(loadable)
    logger.info(f"loaded {len(loadable)} tensors of mobilenetv3_large_100 weights from {path}")
    return report


class MobileNetV3UNet(FlexibleUNet):
    """``FlexibleUNet`` with the MobileNetV3-Large encoder, optionally ImageNet-initialised from a local file.

    Args:
        in_channels: 3 (grayscale stacked to RGB, as in the published recipe) or 1.
        out_channels: classes including background.
        pretrained_path: a timm ``mobilenetv3_large_100`` state dict (``.pt``/``.pth``); ``None`` for random
            initialisation. Nothing is downloaded.
        decoder_channels: decoder widths, from the deepest.
        kwargs: other ``FlexibleUNet`` arguments (``norm``, ``act``, ``dropout``, ``upsample``...).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 6,
        pretrained_path: str | None = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        **kwargs,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            backbone="mobilenetv3_large_100",
            pretrained=False,
            decoder_channels=tuple(decoder_channels),
            spatial_dims=2,
            **kwargs,
        )
        if pretrained_path:
            load_timm_mobilenetv3(self.encoder, pretrained_path)
