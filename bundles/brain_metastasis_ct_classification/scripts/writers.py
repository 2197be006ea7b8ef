"""The patient predictions CSV, written atomically when the run completes.

One row per patient: ``patient_id, probability, prediction, threshold, suspicious_slice, suspicious_z_mm,
suspicious_instance_number, n_slices, [label,] source``. ``suspicious_slice`` is the 0-based index, in the
input series sorted from inferior to superior (the order ITK and MONAI load it in), of the slice with the highest
slice logit; for a DICOM series, ``suspicious_instance_number`` is that slice's InstanceNumber.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

__all__ = ["PredictionWriter", "dicom_instance_numbers", "write_csv_atomic"]

logger = logging.getLogger(__name__)

COLUMNS = (
    "patient_id",
    "probability",
    "prediction",
    "threshold",
    "suspicious_slice",
    "suspicious_z_mm",
    "suspicious_instance_number",
    "n_slices",
)


def write_csv_atomic(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> Path:
    """Write a CSV to a hidden temporary name beside ``path`` and rename it: it appears complete or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def dicom_instance_numbers(folder: str | os.PathLike) -> list[int | None]:
    """InstanceNumber of each slice of a DICOM series, in position order along the slice normal (ascending)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices = []
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except InvalidDicomError:
            continue
        if getattr(ds, "Rows", None) is None:
            continue
        position = np.asarray(getattr(ds, "ImagePositionPatient", [0, 0, 0]), dtype=np.float64)
        orientation = np.asarray(getattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        number = getattr(ds, "InstanceNumber", None)
        slices.append((float(position @ normal), int(number) if number is not None else None))
    slices.sort(key=lambda s: s[0])
    return [s[1] for s in slices]


class PredictionWriter:
    """Ignite handler: collect one row per patient after each iteration, write the CSV when the run completes.

    Reads ``patient_id`` and ``source`` from the batch and the fields of
    :class:`~scripts.engine.PatientPredictiond` from the output; the label too, when the batch has one.

    Args:
        output_dir: the folder of the CSV.
        filename: the CSV name.
    """

    def __init__(self, output_dir: str | os.PathLike, filename: str = "predictions.csv") -> None:
        self.path = Path(output_dir) / filename
        self.rows: list[dict[str, Any]] = []
        self._series_numbers: dict[str, list[int | None]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def _instance_number(self, source: str, index: int) -> int | str:
        if not source or not Path(source).is_dir():
            return ""
        if source not in self._series_numbers:
            self._series_numbers[source] = dicom_instance_numbers(source)
        numbers = self._series_numbers[source]
        if 0 <= index < len(numbers) and numbers[index] is not None:
            return int(numbers[index])
        return ""

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        output = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for b, o in zip(batch, output, strict=True):
            source = str(b.get("source", ""))
            row = {
                "patient_id": str(b.get("patient_id", "")),
                "probability": f"{float(o['probability']):.6f}",
                "prediction": int(o["prediction"]),
                "threshold": f"{float(o['threshold']):.6f}",
                "suspicious_slice": int(o["suspicious_slice"]),
                "suspicious_z_mm": f"{float(o['suspicious_z_mm']):.2f}",
                "suspicious_instance_number": self._instance_number(source, int(o["suspicious_slice"])),
                "n_slices": int(o["n_slices"]),
                "source": source,
            }
            label = o.get("label", b.get("label"))
            if label is not None:
                row["label"] = int(float(np.asarray(label).reshape(-1)[0]) > 0.5)
            self.rows.append(row)

    def _write(self, engine: Engine) -> None:
        header = list(COLUMNS) + (["label"] if any("label" in r for r in self.rows) else []) + ["source"]
        rows = [[r.get(c, "") for c in header] for r in sorted(self.rows, key=lambda r: r["patient_id"])]
        write_csv_atomic(self.path, header, rows)
        logger.info(f"wrote {len(rows)} patient predictions to {self.path}")
