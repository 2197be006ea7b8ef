"""Lesion-size weighting: every tumour section weighs in the loss about as much as the others, whatever its size.

With the recipe's losses a 6 cm mass section of 400 pixels outweighs a 5 mm nodule section of 4 pixels a
hundredfold, and the network learns to leave small round opacities (which look like vessel cross-sections in one
slice) at background. :class:`LesionWeightd` gives the pixels of each connected tumour section of ``area`` pixels
the weight ``clip((reference_area / area) ** power, 1, max_weight)`` (background 1) and stores it as a second
channel of the label, so flips and rotations move it with the mask; :class:`LesionWeightedDiceCELoss` reads it in
its cross-entropy and Dice terms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from .inputs import InputError

__all__ = ["lesion_weight_map", "LesionWeightd", "LesionWeightedDiceCELoss"]


def lesion_weight_map(
    mask: np.ndarray, power: float = 1.0, reference_area: float = 200.0, max_weight: float = 50.0
) -> np.ndarray:
    """Per-pixel weights of a binary mask: 1 for background and, for the pixels of a connected section (8-connected in
    2D) of ``area`` pixels, ``clip((reference_area / area) ** power, 1, max_weight)``.

    Args:
        mask: 2D (or N-D) array, foreground > 0.
        power: 0 gives weight 1 everywhere.
        reference_area: sections of this area or more keep weight 1.
        max_weight: cap for the smallest sections.

    Raises:
        InputError: a negative ``power`` or a non-positive ``reference_area`` or ``max_weight`` under 1.

    Example::

        w = lesion_weight_map(label[0] > 0, power=1.0, reference_area=200)   # a 4-pixel nodule: 50, a 400-pixel mass: 1
    """
    if power < 0 or reference_area <= 0 or max_weight < 1:
        raise InputError(
            f"lesion weights need power >= 0, reference_area > 0 and max_weight >= 1, got {power}, "
            f"{reference_area}, {max_weight}"
        )
    fg = np.asarray(mask) > 0
    weights = np.ones(fg.shape, dtype=np.float32)
    if power == 0 or not fg.any():
        return weights
    components, n = ndimage.label(fg, structure=np.ones((3,) * fg.ndim, dtype=bool))
    areas = np.bincount(components.ravel(), minlength=n + 1).astype(np.float64)
    per_component = np.clip((reference_area / np.maximum(areas, 1.0)) ** power, 1.0, max_weight)
    per_component[0] = 1.0
    return per_component[components].astype(np.float32)


class LesionWeightd(MapTransform):
    """Append the lesion-size weight map (:func:`lesion_weight_map`) to a channel-first binary label as channel 1.

    Args:
        keys: the label key(s); each must hold one channel.
        power, reference_area, max_weight: as :func:`lesion_weight_map`.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        power: float = 1.0,
        reference_area: float = 200.0,
        max_weight: float = 50.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        lesion_weight_map(np.zeros((1, 1)), power, reference_area, max_weight)  # checks the settings once
        self.power, self.reference_area, self.max_weight = power, reference_area, max_weight

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            if label.shape[0] != 1:
                raise InputError(f"LesionWeightd: '{key}' must have one channel, got shape {tuple(label.shape)}")
            array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
            w = lesion_weight_map(array[0], self.power, self.reference_area, self.max_weight)
            w_t = torch.as_tensor(w, dtype=torch.float32)[None]
            if isinstance(label, torch.Tensor):
                d[key] = torch.cat([label.float(), w_t.to(label.device)], dim=0)
            else:
                d[key] = np.concatenate([array.astype(np.float32), w[None]], axis=0)
        return d


class LesionWeightedDiceCELoss(torch.nn.Module):
    """Sigmoid Dice + binary cross-entropy with per-pixel weights carried as the target's second channel.

    The target is ``(B, 2, ...)``: channel 0 the mask, channel 1 the weights (:class:`LesionWeightd`); a ``(B, 1,
    ...)`` target means weight 1 everywhere, and the loss then equals MONAI's ``DiceCELoss(sigmoid=True,
    batch=True)`` with the same ``lambda_dice`` and ``lambda_ce``, smooth terms 1e-5. The cross-entropy is the
    weighted mean (sum of weight x BCE over sum of weights); the Dice counts each pixel ``weight`` times in its
    intersection and in its sums, over the whole batch.

    Args:
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        smooth: added to the Dice numerator and denominator.

    Example::

        loss = LesionWeightedDiceCELoss()
        value = loss(logits, torch.cat([mask, lesion_weights], dim=1))
    """

    def __init__(self, lambda_dice: float = 0.5, lambda_ce: float = 0.5, smooth: float = 1e-5) -> None:
        super().__init__()
        self.lambda_dice, self.lambda_ce, self.smooth = lambda_dice, lambda_ce, smooth

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        channels = input.shape[1]
        if target.shape[1] == 2 * channels:
            mask, weight = target[:, :channels].float(), target[:, channels:].float()
        elif target.shape[1] == channels:
            mask, weight = target.float(), torch.ones_like(input, dtype=torch.float32)
        else:
            raise InputError(
                f"LesionWeightedDiceCELoss: target has {target.shape[1]} channels for {channels} output channels "
                f"(expected {channels} or {2 * channels})"
            )
        logits = input.float()
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        ce = (weight * bce).sum() / weight.sum()
        prob = torch.sigmoid(logits)
        intersection = (weight * prob * mask).sum()
        denominator = (weight * prob).sum() + (weight * mask).sum()
        dice = 1.0 - (2.0 * intersection + self.smooth) / (denominator + self.smooth)
        return self.lambda_dice * dice + self.lambda_ce * ce
