"""Patient-level batching: all slices of one patient per step.

* :class:`PatientSliceDataset` exposes the cached slice stacks of a patient dataset slice by slice, applying the
  random (per-slice) transforms, and knows which slices belong to which patient.
* :class:`PatientBatchSampler` yields, per step, the indices of all slices of one patient (patients shuffled each
  epoch; sharded over processes for DDP).
* :func:`collate_patient` stacks them into one patient batch: ``image`` ``(1, S, H, W)``, ``label`` ``(1, 1)``,
  ``slice_index``/``slice_z`` ``(1, S)``, ``patient_id`` ``[id]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["PatientBatchSampler", "PatientSliceDataset", "collate_patient", "collate_patients"]

logger = logging.getLogger(__name__)

#: per-patient keys copied onto every slice sample
_PATIENT_KEYS = ("label", "patient_id", "source")


class PatientSliceDataset(Dataset):
    """Slice view of a dataset of patients whose ``image`` is a ``(S, H, W)`` stack of preprocessed slices.

    Sample ``i`` is one slice: ``{"image": (1, H, W), "label": float, "patient_id": str, "slice_index": int,
    "slice_z": float, "slice_pos": int}`` passed through ``transform`` (the random, per-slice augmentation).

    Args:
        patients: a dataset of preprocessed patients (a ``CacheDataset`` of the deterministic transforms; it is
            read once here, to count the slices, and then without copying).
        transform: random transform applied to each slice sample (``None`` for none).
    """

    def __init__(self, patients: Sequence[dict], transform: Callable | None = None) -> None:
        self.patients = patients
        self.transform = transform
        self._items: list[dict] = [patients[i] for i in range(len(patients))]
        self.patient_slices: list[list[int]] = []
        self._index: list[tuple[int, int]] = []
        for p, item in enumerate(self._items):
            n = int(item["image"].shape[0])
            start = len(self._index)
            self._index.extend((p, s) for s in range(n))
            self.patient_slices.append(list(range(start, start + n)))

    def __len__(self) -> int:
        return len(self._index)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        """Seed the per-slice transform (called by MONAI's DataLoader in each worker)."""
        if self.transform is not None and hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed, state=state)
        return self

    def __getitem__(self, i: int) -> dict[str, Any]:
        p, s = self._index[i]
        item = self._items[p]
        sample: dict[str, Any] = {key: item[key] for key in _PATIENT_KEYS if key in item}
        sample["image"] = torch.as_tensor(item["image"][s : s + 1]).clone().float()
        sample["slice_index"] = int(item["slice_index"][s]) if "slice_index" in item else s
        sample["slice_z"] = float(item["slice_z"][s]) if "slice_z" in item else float(s)
        sample["slice_pos"] = s
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


class PatientBatchSampler(Sampler[list[int]]):
    """Yield the slice indices of one patient per step.

    Args:
        patient_slices: for each patient, the dataset indices of its slices (``PatientSliceDataset.patient_slices``).
        shuffle: shuffle the patients each epoch (slice order within a patient is kept).
        seed: seed of the shuffle; epoch ``e`` uses ``seed + e``.
        num_replicas: processes sharing the patients (DDP); ``None`` reads ``torch.distributed``.
        rank: this process's rank; ``None`` reads ``torch.distributed``.
        even_divisible: repeat patients so every process gets the same number of steps (needed by DDP training).
        patients_per_batch: patients per step (default 1). With more than one, collate with
            :func:`collate_patients`: the batch norms of the network then see several patients per step, and the
            gradient of a step averages several patient losses.
    """

    def __init__(
        self,
        patient_slices: Sequence[Sequence[int]],
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        even_divisible: bool = False,
        patients_per_batch: int = 1,
    ) -> None:
        if not len(patient_slices):
            raise ValueError("no patients to sample from")
        empty = [i for i, s in enumerate(patient_slices) if not len(s)]
        if empty:
            raise ValueError(f"patients {empty} have no slices")
        if num_replicas is None or rank is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            num_replicas = dist.get_world_size() if ready and num_replicas is None else (num_replicas or 1)
            rank = dist.get_rank() if ready and rank is None else (rank or 0)
        self.patient_slices = [list(s) for s in patient_slices]
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.even_divisible = bool(even_divisible)
        self.epoch = 0
        self.patients_per_batch = max(1, int(patients_per_batch))

    def _order(self) -> list[int]:
        order = list(range(len(self.patient_slices)))
        if self.shuffle:
            order = list(np.random.default_rng(self.seed + self.epoch).permutation(order))
        if self.even_divisible and len(order) % self.num_replicas:
            order += order[: self.num_replicas - len(order) % self.num_replicas]
        return order[self.rank :: self.num_replicas]

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next shuffle (otherwise it advances by one per pass)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        self.epoch += 1
        k = self.patients_per_batch
        for start in range(0, len(order), k):
            yield [i for p in order[start : start + k] for i in self.patient_slices[p]]

    def __len__(self) -> int:
        return -(-len(self._order()) // self.patients_per_batch)


def collate_patient(samples: Sequence[dict]) -> dict[str, Any]:
    """Stack the slice samples of one patient into a batch of one patient.

    Returns:
        ``image`` ``(1, S, H, W)``; ``label`` ``(1, 1)`` float when the samples carry one; ``slice_index``,
        ``slice_z`` ``(1, S)``; ``patient_id`` and ``source`` as one-element lists.

    Raises:
        ValueError: when the samples come from more than one patient.
    """
    if not samples:
        raise ValueError("empty patient batch")
    ids = {s.get("patient_id") for s in samples}
    if len(ids) > 1:
        raise ValueError(f"a patient batch mixes patients {sorted(map(str, ids))}")
    order = sorted(range(len(samples)), key=lambda i: samples[i].get("slice_pos", i))
    samples = [samples[i] for i in order]
    images = [torch.as_tensor(s["image"]).reshape(s["image"].shape[-2:]) for s in samples]
    batch: dict[str, Any] = {
        "image": torch.stack(images)[None].float(),
        "slice_index": torch.as_tensor([int(s["slice_index"]) for s in samples], dtype=torch.long)[None],
        "slice_z": torch.as_tensor([float(s["slice_z"]) for s in samples], dtype=torch.float32)[None],
        "patient_id": [samples[0].get("patient_id", "")],
        "source": [str(samples[0].get("source", ""))],
    }
    if "label" in samples[0]:
        batch["label"] = torch.as_tensor([[float(samples[0]["label"])]], dtype=torch.float32)
    return batch


def collate_patients(samples: Sequence[dict]) -> dict[str, Any]:
    """Stack the slice samples of several patients (:class:`PatientBatchSampler` with ``patients_per_batch > 1``).

    Each patient's slices are collated by :func:`collate_patient`; stacks shorter than the longest are padded by
    repeating their last slice, which leaves the MAX over a patient's slice logits unchanged.

    Returns:
        ``image`` ``(B, S, H, W)``, ``label`` ``(B, 1)``, ``slice_index``/``slice_z`` ``(B, S)``, ``patient_id`` and
        ``source`` as lists of ``B``.
    """
    if not samples:
        raise ValueError("empty patient batch")
    groups: dict[Any, list[dict]] = {}
    for s in samples:
        groups.setdefault(s.get("patient_id"), []).append(s)
    batches = [collate_patient(g) for g in groups.values()]
    n = max(b["image"].shape[1] for b in batches)

    def pad(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1] == n:
            return t
        return torch.cat([t, t[:, -1:].expand(t.shape[0], n - t.shape[1], *t.shape[2:])], dim=1)

    out: dict[str, Any] = {
        key: torch.cat([pad(b[key]) for b in batches]) for key in ("image", "slice_index", "slice_z")
    }
    out["patient_id"] = [b["patient_id"][0] for b in batches]
    out["source"] = [b["source"][0] for b in batches]
    if all("label" in b for b in batches):
        out["label"] = torch.cat([b["label"] for b in batches])
    return out
