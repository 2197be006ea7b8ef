"""Run a bundle's whole inference workflow (``monai.bundle`` ``ConfigWorkflow``) on the selected DICOM series.

Some bundles' inference is more than pre-processing -> network -> post-processing: the brain metastasis bundle
stacks the brain slices of a patient, batches them with its own sampler, reads its decision threshold from the
checkpoint's training record and pools slice logits into a patient probability. Rather than re-implement any of
that in an app, :class:`BundleWorkflowOperator` hands the selected series (its files, linked into a private
folder) to the bundle's own ``inference.json`` exactly as ``python -m monai.bundle run`` would, and collects what
the bundle's evaluator produced for each input (its post-processed outputs with the batch's metadata).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec

from ..bundle_model import BundleModel, run_inference_workflow

__all__ = ["BundleWorkflowOperator", "link_series", "run_inference_workflow"]

logger = logging.getLogger(__name__)


def link_series(series, folder: Path) -> Path:
    """Link (or copy) the files of an SDK ``DICOMSeries`` into ``folder``; the files come from the loader."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, instance in enumerate(series.get_sop_instances()):
        src = getattr(instance.get_native_sop_instance(), "filename", None)
        if not src or not Path(src).is_file():
            raise ValueError(f"series {series.SeriesInstanceUID}: instance {i} was not read from a file")
        dst = folder / f"{i:05d}_{Path(src).name}"
        try:
            os.symlink(Path(src).resolve(), dst)
        except OSError:
            shutil.copy2(src, dst)
    return folder


class BundleWorkflowOperator(Operator):
    """Run a bundle's inference workflow on the first selected series.

    Named input:
        study_selected_series_list: from ``DICOMSeriesSelectorOperator``.

    Named output:
        records: ``{"records": [...], "series": DICOMSeries, "study": DICOMStudy}``; one record per input the
            bundle evaluated (here one: the series).

    Args:
        fragment: the application.
        model: the resolved model.
        overrides: config overrides for every run.
    """

    def __init__(self, fragment: Fragment, *args, model: BundleModel, overrides: dict | None = None, **kwargs):
        self._model = model
        self._overrides = dict(overrides or {})
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):  # noqa: D102 (SDK signature)
        spec.input("study_selected_series_list")
        spec.output("records").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):  # noqa: D102 (SDK signature)
        selected = op_input.receive("study_selected_series_list")
        study_selected = selected[0]
        series = study_selected.selected_series[0].series
        patient = str(series.get_sop_instances()[0].get_native_sop_instance().get("PatientID", "") or "")
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", patient) or "patient"
        with tempfile.TemporaryDirectory(prefix="bundle_run_") as tmp:
            folder = link_series(series, Path(tmp) / name)
            records = run_inference_workflow(self._model, folder, Path(tmp) / "out", **self._overrides)
        if not records:
            raise ValueError(f"series {series.SeriesInstanceUID}: the bundle produced no prediction")
        op_output.emit({"records": records, "series": series, "study": study_selected.study}, "records")
