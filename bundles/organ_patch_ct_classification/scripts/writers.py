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
    """Ignite handler: one row per input with the predicted class and every class probability.

    Columns: ``image``, ``class``, ``probability``, ``p_<class>`` for each class, then ``source`` and ``click``
    for click inputs. The file is written under a temporary name and renamed at the end of the run.

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
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(outputs)
        for item, data in zip(outputs, batch, strict=False):
            data = data if isinstance(data, dict) else {}
            prob = torch.as_tensor(item["pred"]).detach().float().reshape(-1).cpu()
            image = item.get("image")
            name = image.meta.get("filename_or_obj", "") if hasattr(image, "meta") else ""
            k = int(prob.argmax())
            self.rows.append(
                [
                    str(name),
                    self.class_names[k],
                    f"{float(prob[k]):.4f}",
                    *[f"{float(p):.4f}" for p in prob],
                    str(data.get("source", "")),
                    str(data.get("click", "")),
                ]
            )

    def write(self, engine: Engine | None = None) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        try:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(
                    ["image", "class", "probability", *[f"p_{c}" for c in self.class_names], "source", "click"]
                )
                writer.writerows(self.rows)
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return self.path
