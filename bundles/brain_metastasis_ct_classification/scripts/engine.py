"""Patient-level training pieces for the Ignite engines.

* :class:`PatientSliceInferer`: runs the slice classifier on a patient's slice stack ``(1, S, H, W)`` and returns
  the MAX-pooled patient logit ``(1, 1)`` (training) or all slice logits ``(1, S)`` (validation, inference).
* :class:`GradientClipHandler`: ``clip_grad_norm_`` between backward and the optimizer step.
* :class:`CurriculumHandler`: at each epoch start, which parameter groups train and at which learning rate.
* :class:`TrainingRecord`: validation metrics, threshold and history, saved inside the checkpoints.
* :class:`PatientPredictiond`: post-processing from slice logits to the patient probability, prediction and the
  most suspicious slice.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer
from monai.transforms import MapTransform

__all__ = [
    "CurriculumHandler",
    "GradientClipHandler",
    "PatientPredictiond",
    "PatientSliceInferer",
    "RecordLoader",
    "TrainingRecord",
]

logger = logging.getLogger(__name__)


class PatientSliceInferer(Inferer):
    """Run a slice classifier over one patient's stack of slices.

    Args:
        reduce: ``"max"`` returns the patient logit ``(B, 1)``, the maximum over the slice logits (multiple
            instance learning: a patient is positive when any slice is); ``"none"`` returns all slice logits
            ``(B, S)``.
        slice_batch_size: slices per forward pass when gradients are off (bounds memory at inference);
            ``None`` runs all slices at once.
    """

    def __init__(self, reduce: str = "max", slice_batch_size: int | None = None) -> None:
        if reduce not in ("max", "none"):
            raise ValueError(f"reduce must be 'max' or 'none', got {reduce!r}")
        self.reduce = reduce
        self.slice_batch_size = slice_batch_size

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim != 4:
            raise ValueError(f"expected a patient batch (B, S, H, W), got shape {tuple(inputs.shape)}")
        x = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        b, s = x.shape[:2]
        x = x.reshape(b * s, 1, *x.shape[2:])
        step = self.slice_batch_size if (self.slice_batch_size and not torch.is_grad_enabled()) else b * s
        logits = torch.cat([network(x[i : i + step], *args, **kwargs).reshape(-1) for i in range(0, b * s, step)])
        logits = logits.float().reshape(b, s)
        if self.reduce == "max":
            return logits.max(dim=1, keepdim=True).values
        return logits


class GradientClipHandler:
    """Clip the gradient norm after ``backward`` and before the optimizer step (``IterationEvents.BACKWARD_COMPLETED``).

    With CUDA AMP the gradients are unscaled first, so the threshold applies to the true gradients. The norm
    before clipping is stored as ``engine.state.output["grad_norm"]``.

    Args:
        max_norm: the largest allowed total norm.
        norm_type: the p of the p-norm.
    """

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm = float(max_norm)
        self.norm_type = float(norm_type)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            engine.scaler.unscale_(engine.optimizer)
        params = [p for g in engine.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, norm_type=self.norm_type)
        if isinstance(engine.state.output, dict):
            engine.state.output["grad_norm"] = float(norm)


class CurriculumHandler:
    """Staged fine-tuning: which parameter groups train, and their learning rates, from a given epoch on.

    Args:
        network: the network; the batch-norm layers of frozen groups are kept in eval mode while it trains (a
            forward pre-hook), so a frozen pretrained backbone keeps its statistics.
        optimizer: an optimizer whose param groups carry a ``name`` (see :func:`scripts.network.param_groups`).
        stages: ``[{"start_epoch": 0, "lr": {"head": 5e-5}}, {"start_epoch": 5, "lr": {"layer4": 1e-5, ...}}]``;
            epochs count from 0. Groups not named in the active stage are frozen (no gradient, learning rate 0);
            the name ``"*"`` sets every group not named otherwise.

    The active stage depends only on the epoch, so a resumed run picks up the right stage.
    """

    def __init__(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, stages: Sequence[Mapping]) -> None:
        if not stages:
            raise ValueError("the curriculum needs at least one stage")
        self.network = network
        self.optimizer = optimizer
        self.stages = sorted((dict(s) for s in stages), key=lambda s: int(s.get("start_epoch", 0)))
        if int(self.stages[0].get("start_epoch", 0)) != 0:
            raise ValueError("the first curriculum stage must start at epoch 0")
        names = {g.get("name") for g in optimizer.param_groups}
        for stage in self.stages:
            unknown = set(stage.get("lr", {})) - names - {"*"}
            if unknown:
                raise ValueError(
                    f"curriculum stage {stage} names unknown groups {sorted(unknown)}; known: {sorted(names)}"
                )
        self.active: int | None = None
        self.frozen_norms: list[torch.nn.Module] = []
        net = getattr(network, "module", network)
        self._hook = net.register_forward_pre_hook(self._freeze_norms)

    def _freeze_norms(self, module: torch.nn.Module, args: Any) -> None:
        if module.training:
            for norm in self.frozen_norms:
                norm.eval()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def stage_at(self, epoch: int) -> int:
        """Index of the stage active during 0-based ``epoch``."""
        return max(i for i, s in enumerate(self.stages) if int(s.get("start_epoch", 0)) <= epoch)

    def apply(self, index: int) -> dict[str, float]:
        """Set the learning rates and trainable groups of stage ``index``; returns group -> learning rate."""
        lrs = dict(self.stages[index].get("lr", {}))
        default = float(lrs.pop("*", 0.0))
        rates, frozen_params = {}, set()
        for group in self.optimizer.param_groups:
            name = group.get("name", "")
            lr = float(lrs.get(name, default))
            group["lr"] = lr
            for p in group["params"]:
                p.requires_grad_(lr > 0)
                if lr <= 0:
                    frozen_params.add(id(p))
            rates[name] = lr
        net = getattr(self.network, "module", self.network)
        self.frozen_norms = [
            m
            for m in net.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and any(id(p) in frozen_params for p in m.parameters(recurse=False))
        ]
        self.active = index
        return rates

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch) - 1
        index = self.stage_at(epoch)
        if index != self.active:
            rates = self.apply(index)
            training = ", ".join(f"{k} {v:g}" for k, v in rates.items() if v > 0)
            logger.info(f"epoch {epoch}: curriculum stage {index + 1}/{len(self.stages)}: training {training}")


class TrainingRecord:
    """Validation metrics, the decision threshold and the history of a run; a checkpointable Ignite handler.

    Attach it to the trainer (it averages the loss of each epoch) and to the evaluator (it records the metrics
    and takes the threshold from ``threshold_metric``). Put it in the ``save_dict`` of the checkpoint savers and
    every checkpoint carries it: ``{"threshold", "metrics", "epoch", "history"}`` (plain numbers, loadable with
    ``weights_only``).

    Args:
        threshold: the decision threshold on the patient probability until a validation sets one.
        threshold_metric: name of the metric holding the F1-maximising threshold of the validation.
    """

    def __init__(self, threshold: float = 0.5, threshold_metric: str = "val_threshold") -> None:
        self.threshold = float(threshold)
        self.threshold_metric = threshold_metric
        self.metrics: dict[str, float] = {}
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self._losses: list[float] = []
        self._train_loss: dict[int, float] = {}

    def attach(self, engine: Engine) -> None:
        if hasattr(engine, "optimizer"):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._train_epoch)
        else:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._validation)

    def _iteration(self, engine: Engine) -> None:
        out = engine.state.output
        out = out[0] if isinstance(out, list) and out else out  # decollated: every item carries the batch loss
        loss = out.get("loss") if isinstance(out, dict) else None
        if loss is not None:
            self._losses.append(float(loss))

    def _train_epoch(self, engine: Engine) -> None:
        if self._losses:
            self._train_loss[int(engine.state.epoch)] = sum(self._losses) / len(self._losses)
        self._losses = []

    def _validation(self, engine: Engine) -> None:
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, int | float)}
        self.metrics = metrics
        self.epoch = int(engine.state.epoch)
        threshold = metrics.get(self.threshold_metric)
        if threshold is not None and math.isfinite(threshold):
            self.threshold = float(threshold)
        entry = {"epoch": float(self.epoch), **metrics}
        if self.epoch in self._train_loss:
            entry["train_loss"] = self._train_loss[self.epoch]
        elif self._losses:  # validation runs at the trainer's epoch end, possibly before _train_epoch
            entry["train_loss"] = sum(self._losses) / len(self._losses)
        self.history = [h for h in self.history if h.get("epoch") != entry["epoch"]] + [entry]

    def state_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "metrics": dict(self.metrics),
            "epoch": self.epoch,
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.threshold = float(state.get("threshold", self.threshold))
        self.metrics = dict(state.get("metrics", {}))
        self.epoch = int(state.get("epoch", 0))
        self.history = [dict(h) for h in state.get("history", [])]


class RecordLoader:
    """Ignite handler: at start, read the :class:`TrainingRecord` of a checkpoint (its threshold) if it has one.

    A bare state dict of weights has no record: the record keeps its default threshold and a warning says so.

    Args:
        load_path: the checkpoint.
        record: the record to fill.
        key: the checkpoint key of the record.
    """

    def __init__(self, load_path: str | os.PathLike, record: TrainingRecord, key: str = "record") -> None:
        self.load_path = load_path
        self.record = record
        self.key = key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        checkpoint = torch.load(self.load_path, map_location="cpu", weights_only=True, mmap=True)
        state = checkpoint.get(self.key) if isinstance(checkpoint, dict) else None
        if isinstance(state, dict) and "threshold" in state:
            self.record.load_state_dict(state)
            logger.info(f"{self.load_path}: decision threshold {self.record.threshold:.4f} (epoch {self.record.epoch})")
        else:
            logger.warning(f"{self.load_path}: no training record; decision threshold {self.record.threshold}")


class PatientPredictiond(MapTransform):
    """From slice logits to a patient prediction (post-processing of one patient).

    Reads ``pred`` (``(S,)`` slice logits) and the slice positions of the batch, and writes: ``pred`` (``(1,)``,
    the max-pooled patient logit, for the metrics), ``slice_logits``, ``probability``, ``prediction`` (1 when the
    probability reaches the threshold), ``suspicious_slice`` (index in the input series of the slice with the
    highest logit; ``suspicious_pos`` is its position in the stack), ``suspicious_z_mm`` and ``n_slices``.

    Args:
        keys: the prediction key.
        threshold: a number, or an object with a ``threshold`` attribute read at call time (the
            :class:`TrainingRecord` filled from the checkpoint).
        slice_index_key: key of the slices' series indices.
        slice_z_key: key of the slices' z positions.
    """

    def __init__(
        self,
        keys: str = "pred",
        threshold: float | Any = 0.5,
        slice_index_key: str = "slice_index",
        slice_z_key: str = "slice_z",
    ) -> None:
        super().__init__(keys)
        self.threshold = threshold
        self.slice_index_key = slice_index_key
        self.slice_z_key = slice_z_key

    def current_threshold(self) -> float:
        value = getattr(self.threshold, "threshold", self.threshold)
        return float(value)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        threshold = self.current_threshold()
        for key in self.key_iterator(d):
            logits = torch.as_tensor(d[key]).detach().float().reshape(-1)
            k = int(torch.argmax(logits))
            patient_logit = logits[k]
            probability = float(torch.sigmoid(patient_logit))
            index = d.get(self.slice_index_key)
            z = d.get(self.slice_z_key)
            d["slice_logits"] = logits
            d[key] = patient_logit.reshape(1)
            d["probability"] = probability
            d["prediction"] = int(probability >= threshold)
            d["threshold"] = threshold
            d["suspicious_pos"] = k
            d["suspicious_slice"] = int(torch.as_tensor(index).reshape(-1)[k]) if index is not None else k
            d["suspicious_z_mm"] = float(torch.as_tensor(z).reshape(-1)[k]) if z is not None else float("nan")
            d["n_slices"] = int(logits.numel())
        return d
