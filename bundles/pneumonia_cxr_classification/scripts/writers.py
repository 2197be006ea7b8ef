"""``predictions.csv`` of an inference run, written atomically when the run completes."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """Ignite handler: one row per radiograph with the predicted class, every class probability and the CAM file.

    Columns: ``image``, ``class``, ``probability``, ``p_<class>`` per class, ``cam`` (when a CAM saver ran
    before this handler), then the reader's ``modality``, ``photometric`` and ``transfer_syntax``.

    Args:
        output_dir: destination folder.
        class_names: class names in output order.
        filename: CSV file name.
    """

    def __init__(self, output_dir: str, class_names: Sequence[str], filename: str = "predictions.csv") -> None:
        self.path = Path(output_dir) / filename
        self.class_names = list(class_names)
        self.rows: list[list] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def update(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item in outputs:
            prob = torch.as_tensor(item["pred"]).detach().float().reshape(-1).cpu()
            image = item.get("image")
            meta = image.meta if hasattr(image, "meta") else {}
            k = int(prob.argmax())
            self.rows.append(
                [
                    str(meta.get("filename_or_obj", "")),
                    self.class_names[k],
                    f"{float(prob[k]):.4f}",
                    *[f"{float(p):.4f}" for p in prob],
                    str(item.get("cam", "")),
                    str(meta.get("modality", "")),
                    str(meta.get("photometric", "")),
                    str(meta.get("transfer_syntax", "")),
                ]
            )

    def write(self, engine: Engine | None = None) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        header = ["image", "class", "probability", *[f"p_{c}" for c in self.class_names], "cam"]
        try:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow([*header, "modality", "photometric", "transfer_syntax"])
                writer.writerows(self.rows)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return self.path
