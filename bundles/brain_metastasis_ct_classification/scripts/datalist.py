"""Patient datalists from a folder of patients and a labels CSV, split 80/20 by patient.

The dataset folder holds one DICOM CT series per patient (``<patient_id>/``, or ``<patient_id>.nii.gz``) and a CSV
of ``patient_id,label`` (label 1 = brain metastases, 0 = none). The labelled patients are split by patient,
stratified by label, into training and validation with a fixed seed (``monai.data.partition_dataset_classes``), so
no patient contributes slices to both. Held-out patients are listed in a second CSV (``labels_test.csv``).
Every listed patient is checked before training starts.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from monai.data import partition_dataset_classes

from .inputs import InputError, check_patient

__all__ = ["PATIENT_COLUMNS", "LABEL_COLUMNS", "patient_datalist", "read_labels", "split_patients"]

logger = logging.getLogger(__name__)

PATIENT_COLUMNS = ("patient_id", "patientid", "patient", "id", "case", "case_id")
LABEL_COLUMNS = ("label", "metastasis", "metastases", "target", "class", "y")
_TRUE = {"1", "true", "yes", "positive", "pos", "metastasis", "metastases"}
_FALSE = {"0", "false", "no", "negative", "neg", "none", "normal"}


def read_labels(csv_path: str | os.PathLike) -> dict[str, int]:
    """Read a labels CSV: a header naming a patient column and a label column, then one row per patient.

    Recognised column names (case-insensitive): patient ``patient_id``, ``PatientID``, ``patient``, ``id``,
    ``case``; label ``label``, ``metastasis``, ``target``, ``class``. Labels are 0/1 (or no/yes, false/true,
    negative/positive).

    Raises:
        InputError: a missing file, no recognised header, a bad label or a duplicated patient (naming the line).
    """
    path = Path(csv_path)
    if not path.is_file():
        raise InputError(f"{path}: labels CSV not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: empty labels CSV")
    header = [c.strip().lower().replace(" ", "_") for c in rows[0]]
    try:
        i_pat = next(i for i, c in enumerate(header) if c in PATIENT_COLUMNS)
        i_lab = next(i for i, c in enumerate(header) if c in LABEL_COLUMNS)
    except StopIteration:
        raise InputError(
            f"{path}: header {rows[0]} names no patient column ({', '.join(PATIENT_COLUMNS)}) "
            f"and label column ({', '.join(LABEL_COLUMNS)})"
        ) from None
    labels: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(i_pat, i_lab):
            raise InputError(f"{path}:{line}: expected at least {max(i_pat, i_lab) + 1} columns, got {row}")
        pid, value = row[i_pat].strip(), row[i_lab].strip().lower()
        if not pid:
            raise InputError(f"{path}:{line}: empty patient id")
        if value in _TRUE:
            label = 1
        elif value in _FALSE:
            label = 0
        else:
            raise InputError(f"{path}:{line}: label {row[i_lab]!r} of patient {pid} is not 0/1")
        if pid in labels:
            raise InputError(f"{path}:{line}: patient {pid} is listed twice")
        labels[pid] = label
    if not labels:
        raise InputError(f"{path}: no patients listed")
    return labels


def _patient_path(dataset_dir: Path, pid: str, csv_path: Path) -> Path:
    for candidate in (dataset_dir / pid, dataset_dir / f"{pid}.nii.gz", dataset_dir / f"{pid}.nii"):
        if candidate.exists():
            return candidate
    raise InputError(f"{dataset_dir / pid}: patient {pid} of {csv_path} has no DICOM folder or NIfTI file")


def split_patients(items: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split patients into training and validation, stratified by label, reproducibly.

    Raises:
        InputError: fewer than 2 patients.
        ValueError: ``val_fraction`` outside (0, 1).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(items) < 2:
        raise InputError(f"need at least 2 labelled patients to split into training and validation, got {len(items)}")
    classes = [int(item["label"]) for item in items]
    train, val = partition_dataset_classes(
        items, classes, ratios=[1 - val_fraction, val_fraction], shuffle=True, seed=seed
    )
    if not val:  # tiny sets: move one patient over
        val, train = train[-1:], train[:-1]
    if not train:
        train, val = val[:1], val[1:]
    return train, val


def patient_datalist(
    dataset_dir: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    split: str = "training",
    val_fraction: float = 0.2,
    seed: int = 0,
    max_patients: int | None = None,
    test_labels_csv: str | os.PathLike | None = None,
    check: bool = True,
) -> list[dict]:
    """Patients of one split: ``[{"image": <series folder or NIfTI>, "source", "label": 0|1, "patient_id"}]``.

    Args:
        dataset_dir: the folder of patients.
        labels_csv: the labelled training + validation patients (default ``<dataset_dir>/labels.csv``).
        split: ``training`` or ``validation`` (the 80/20 patient split of ``labels_csv``), or ``test`` (the
            held-out patients of ``test_labels_csv``; the validation split when that file does not exist).
        val_fraction: share of patients held out for validation.
        seed: seed of the split.
        max_patients: keep at most this many patients of the split (a quick run); ``None`` keeps all.
        test_labels_csv: held-out patients (default ``<dataset_dir>/labels_test.csv``).
        check: check every patient's series (one CT series, complete files) first.

    Raises:
        InputError: a missing folder or CSV, a bad CSV row, or a listed patient without a valid series.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise InputError(f"{dataset_dir}: dataset folder not found")
    if split not in ("training", "validation", "test"):
        raise ValueError(f"unknown split {split!r}; expected training, validation or test")
    labels_csv = Path(labels_csv) if labels_csv else dataset_dir / "labels.csv"
    test_csv = Path(test_labels_csv) if test_labels_csv else dataset_dir / "labels_test.csv"
    if split == "test" and not test_csv.is_file():
        logger.warning(f"{test_csv} not found: evaluating on the validation split instead")
        split = "validation"
    csv_path = test_csv if split == "test" else labels_csv
    labels = read_labels(csv_path)
    items = [
        {"image": path, "source": path, "label": lab, "patient_id": pid}
        for pid, lab in labels.items()
        for path in [str(_patient_path(dataset_dir, pid, csv_path))]
    ]
    if split != "test":
        train, val = split_patients(items, val_fraction, seed)
        items = train if split == "training" else val
    if max_patients is not None:
        items = items[: int(max_patients)]
    if check:
        for item in items:
            check_patient(item["image"])
    return items
