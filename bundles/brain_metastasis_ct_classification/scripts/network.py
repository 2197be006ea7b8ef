"""The ResNet-50 slice classifier's layout, its pretrained-weight loader and the parameter groups of the curriculum.

The network (``network_def`` in the configs, built from MONAI and torch classes only, so ``verify_net_in_out`` and
``ckpt_export`` work without this package) is::

    torch.nn.Sequential(
        monai.networks.nets.ResNet("bottleneck", [3, 4, 6, 3], ..., spatial_dims=2, n_input_channels=1,
                                   conv1_t_stride=2, feed_forward=False, bias_downsample=False),  # "0": ResNet-50
        Linear(2048, 512), ReLU, Dropout(0.4), Linear(512, 1),                                     # "1".."4": head
    )

The backbone has the torchvision / RadImageNet key layout under the prefix ``0.`` (``0.conv1.weight``,
``0.layer1.0.conv1.weight``, ``0.layer1.0.downsample.0.weight``, ...): a stride-2 7x7 stem, max pooling, bias-free
shortcut convolutions. :func:`metastasis_resnet50` builds the same network in Python.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.networks.nets import ResNet
from torch import nn

from .inputs import InputError

__all__ = [
    "BACKBONE_PREFIX",
    "GROUPS",
    "PretrainedReport",
    "load_pretrained_weights",
    "map_resnet_state_dict",
    "metastasis_resnet50",
    "param_groups",
    "with_pretrained",
]

logger = logging.getLogger(__name__)

BACKBONE_PREFIX = "0."
#: curriculum parameter groups: name -> submodules of the network
GROUPS: dict[str, tuple[str, ...]] = {
    "stem": ("0.conv1", "0.bn1"),
    "layer1": ("0.layer1",),
    "layer2": ("0.layer2",),
    "layer3": ("0.layer3",),
    "layer4": ("0.layer4",),
    "head": ("1", "2", "3", "4"),
}
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "resnet.", "net.")


def metastasis_resnet50(in_channels: int = 1, hidden: int = 512, dropout: float = 0.4) -> nn.Sequential:
    """The slice classifier of the configs: MONAI ResNet-50 (2D) + FC(2048->hidden)-ReLU-Dropout-FC(hidden->1).

    Args:
        in_channels: input channels (1: a z-scored CT slice).
        hidden: width of the head's hidden layer.
        dropout: dropout before the last layer.

    Returns:
        a network mapping ``(N, in_channels, H, W)`` to ``(N, 1)`` slice logits.
    """
    backbone = ResNet(
        "bottleneck",
        [3, 4, 6, 3],
        [64, 128, 256, 512],
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_stride=2,
        feed_forward=False,
        bias_downsample=False,
    )
    return nn.Sequential(
        backbone, nn.Linear(2048, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1)
    )


def _unwrap_module(network: nn.Module) -> nn.Module:
    return getattr(network, "module", network)


def param_groups(network: nn.Module, groups: dict[str, tuple[str, ...]] | None = None) -> list[dict]:
    """Optimizer parameter groups, one per curriculum group (``stem``, ``layer1``..``layer4``, ``head``).

    Every group starts with learning rate 0; :class:`~scripts.engine.CurriculumHandler` sets the rates.

    Raises:
        ValueError: when a parameter of the network belongs to no group (a network of another layout).
    """
    net = _unwrap_module(network)
    groups = groups or GROUPS
    out, seen = [], set()
    for name, modules in groups.items():
        params = [p for m in modules for p in net.get_submodule(m).parameters()]
        seen.update(id(p) for p in params)
        out.append({"params": params, "name": name, "lr": 0.0})
    orphans = [n for n, p in net.named_parameters() if id(p) not in seen]
    if orphans:
        raise ValueError(f"parameters outside the curriculum groups: {orphans[:5]}")
    return out


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained_weights` loaded."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    conv1_reduced: bool = False


def _unwrap_state(state: object) -> dict:
    while isinstance(state, dict):
        inner = next(
            (state[k] for k in ("state_dict", "model", "network", "net") if isinstance(state.get(k), dict)), None
        )
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("not a state dict of tensors")
    return state


def map_resnet_state_dict(
    state: dict, target: dict, conv1_reduce: str = "sum", prefix: str = BACKBONE_PREFIX
) -> tuple[dict, PretrainedReport]:
    """Map a ResNet-50 state dict (torchvision/RadImageNet layout) onto the keys and shapes of ``target``.

    Common wrapper prefixes (``module.``, ``backbone.``, ``model.``, ...) are stripped and the backbone prefix of
    the target (``0.``) is added; a 3-channel ``conv1.weight`` is reduced to 1 channel by summing over the colour
    channels (``conv1_reduce="sum"``: a grey image copied into R, G and B gives the same response) or averaging
    (``"mean"``); keys the target lacks (the 1000-class ``fc``) are reported as unexpected, tensors of another
    shape as mismatched.

    Returns:
        the mapped state dict (keys of ``target`` only) and a report (``source`` left empty).
    """
    if conv1_reduce not in ("sum", "mean"):
        raise ValueError(f"conv1_reduce must be 'sum' or 'mean', got {conv1_reduce!r}")
    report = PretrainedReport(source="")
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name, stripped = key, True
        while stripped:
            stripped = False
            for wrapper in _PREFIXES:
                if name.startswith(wrapper):
                    name, stripped = name[len(wrapper) :], True
        name = prefix + name if prefix + name in target else name
        if name not in target or name.startswith(tuple(f"{i}." for i in range(1, 5))):
            report.unexpected.append(key)
            continue
        want = target[name].shape
        if name.endswith("conv1.weight") and value.ndim == 4 and value.shape[1] != want[1] and want[1] == 1:
            value = value.sum(1, keepdim=True) if conv1_reduce == "sum" else value.mean(1, keepdim=True)
            report.conv1_reduced = True
        if value.shape != want:
            report.mismatched.append(f"{key} {tuple(value.shape)} != {tuple(want)}")
            continue
        mapped[name] = value.to(target[name].dtype)
    report.loaded = sorted(mapped)
    report.missing = sorted(k for k in target if k not in mapped and not k.endswith("num_batches_tracked"))
    return mapped, report


def load_pretrained_weights(network: nn.Module, path: str | os.PathLike, conv1_reduce: str = "sum") -> PretrainedReport:
    """Load a local ResNet-50 state dict into the backbone of ``network`` (weights only; nothing is downloaded).

    Args:
        network: the slice classifier (or a DDP wrapper of it).
        path: a ``.pt``/``.pth`` file holding a state dict (or ``{"state_dict": ...}``/``{"model": ...}``).
        conv1_reduce: how a 3-channel stem is reduced to 1 channel (``sum`` or ``mean``).

    Returns:
        the report: loaded, missing (the new head, as expected), unexpected and mismatched keys; it is also logged.

    Raises:
        InputError: a missing or unreadable file, or one from which no ResNet-50 backbone tensor matched.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pretrained weights file not found")
    try:
        state = _unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:
        raise InputError(f"{path}: not a readable state dict of tensors ({type(err).__name__}: {err})") from err
    net = _unwrap_module(network)
    mapped, report = map_resnet_state_dict(state, net.state_dict(), conv1_reduce=conv1_reduce)
    report.source = str(path)
    if not mapped:
        example = ", ".join(list(state)[:3])
        raise InputError(f"{path}: no ResNet-50 backbone tensor matched (keys like {example})")
    net.load_state_dict(mapped, strict=False)
    more = " ..." if len(report.missing) > 6 else ""
    logger.info(
        f"pretrained weights {path}: loaded {len(report.loaded)} tensors"
        f"{' (3-channel conv1 reduced to 1)' if report.conv1_reduced else ''}; "
        f"missing {len(report.missing)} ({', '.join(report.missing[:6])}{more}); "
        f"unexpected {len(report.unexpected)} ({', '.join(report.unexpected[:6])}); "
        f"mismatched {len(report.mismatched)} ({', '.join(report.mismatched[:3])})"
    )
    return report


def with_pretrained(network: nn.Module, path: str | os.PathLike | None, conv1_reduce: str = "sum") -> nn.Module:
    """Return ``network`` after loading ``path`` into it (unchanged when ``path`` is empty); for configs."""
    if path:
        load_pretrained_weights(network, path, conv1_reduce=conv1_reduce)
    return network
