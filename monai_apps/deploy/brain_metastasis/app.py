"""Brain metastasis app: a patient's head CT series in, the patient-level probability out (DICOM Basic Text SR + JSON).

Pipeline (MONAI Deploy App SDK operators, run in-process by Holoscan)::

    StudyLoaderOperator (DICOMDataLoaderOperator)
      -> SeriesSelectorOperator (DICOMSeriesSelectorOperator, Modality CT)
      -> BundleWorkflowOperator (the bundle's own inference.json run by monai.bundle's ConfigWorkflow on the series)
      -> MetastasisReportOperator (patient probability, threshold, per-slice probabilities, most suspicious slice)
      -> DICOMTextSRWriterOperator (Basic Text SR, study/patient tags copied from the series)
      -> JSONWriterOperator (result.json)

The bundle ``brain_metastasis_ct_classification`` classifies the brain slices of a patient and pools them into a
patient probability with its own sampler, inferer and post-processing, and reads its decision threshold from the
checkpoint's training record; the app therefore runs its whole inference workflow rather than only its network.

Run it::

    python -m monai_apps.deploy.brain_metastasis -i DICOM_DIR -o OUT_DIR -m bundles/brain_metastasis_ct_classification
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application, ConditionType, Fragment, Operator, OperatorSpec
from monai.deploy.operators.dicom_text_sr_writer_operator import DICOMTextSRWriterOperator

from ..bundle_model import BundleModel, ModelError, resolve_model
from ..operators import SeriesSelectorOperator, StudyLoaderOperator, modality_rules
from ..operators.bundle_workflow import BundleWorkflowOperator
from ..segmentation import model_info

__all__ = ["BUNDLE", "BrainMetastasisApp", "JSONWriterOperator", "MetastasisReportOperator", "patient_report"]

BUNDLE = "brain_metastasis_ct_classification"
RESULT_FILE = "result.json"

logger = logging.getLogger(__name__)


def _superior_order(series) -> list:
    """The series' instances from inferior to superior (the order the bundle's ITK reader gives in RAS)."""

    def height(instance) -> float:
        ds = instance.get_native_sop_instance()
        position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
        cosines = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        normal = np.cross(cosines[:3], cosines[3:])
        return float(position @ normal) * (1.0 if normal[2] >= 0 else -1.0)

    return sorted(series.get_sop_instances(), key=height)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def patient_report(record: dict[str, Any], series, model: BundleModel, bundle_id: str = BUNDLE) -> dict[str, Any]:
    """The app's result from the bundle's output for one patient (see ``scripts.engine.PatientPredictiond``).

    Each analysed slice is identified by its index in the series sorted from inferior to superior (the bundle's
    ``slice_index``), its SOP Instance UID and Instance Number, its height (mm) and its probability.
    """
    ordered = _superior_order(series)
    logits = [float(v) for v in np.atleast_1d(record.get("slice_logits", []))]
    indices = [int(v) for v in np.atleast_1d(record.get("slice_index", range(len(logits))))]
    heights = [float(v) for v in np.atleast_1d(record.get("slice_z", [float("nan")] * len(logits)))]
    slices = []
    for logit, index, z in zip(logits, indices, heights, strict=False):
        ds = ordered[index].get_native_sop_instance() if 0 <= index < len(ordered) else None
        slices.append(
            {
                "series_index": index,
                "z_mm": round(z, 2) if math.isfinite(z) else None,
                "probability": round(_sigmoid(logit), 6),
                "instance_number": int(ds.InstanceNumber) if ds is not None and ds.get("InstanceNumber") else None,
                "sop_instance_uid": str(ds.SOPInstanceUID) if ds is not None else None,
            }
        )
    probability = float(record["probability"])
    threshold = float(record.get("threshold", 0.5))
    positive = bool(int(record.get("prediction", probability >= threshold)))
    top = max(slices, key=lambda s: s["probability"]) if slices else None
    first = series.get_sop_instances()[0].get_native_sop_instance()
    return {
        "bundle": {"id": bundle_id, "name": model.name, "version": model.version},
        "model": {"kind": model.kind, "file": model.weights.name},
        "patient_id": str(first.get("PatientID", "")),
        "study_instance_uid": str(first.get("StudyInstanceUID", "")),
        "series_instance_uid": str(series.SeriesInstanceUID),
        "series_description": str(first.get("SeriesDescription", "")),
        "probability": round(probability, 6),
        "threshold": round(threshold, 6),
        "positive": positive,
        "finding": "brain metastasis suspected" if positive else "no brain metastasis detected",
        "n_slices_in_series": len(ordered),
        "n_slices_analysed": len(slices),
        "most_suspicious_slice": top,
        "slices": slices,
        "intended_use": "research and engineering reference only; not for clinical use",
    }


def report_text(result: dict[str, Any]) -> str:
    """The Basic Text SR narrative of a :func:`patient_report`."""
    lines = [
        f"Brain metastasis classification of head CT by {result['bundle']['id']} {result['bundle']['version']} "
        "(AI result, research use only, not for clinical use).",
        f"Patient-level probability of brain metastasis: {result['probability']:.3f} "
        f"(decision threshold {result['threshold']:.3f}): {result['finding'].upper()}.",
    ]
    top = result.get("most_suspicious_slice")
    if top:
        where = f"instance number {top['instance_number']}" if top["instance_number"] is not None else "slice"
        z = f", z = {top['z_mm']:.1f} mm" if top["z_mm"] is not None else ""
        lines.append(f"Most suspicious slice: {where}{z} (slice probability {top['probability']:.3f}).")
    lines.append(f"Brain slices analysed: {result['n_slices_analysed']} of {result['n_slices_in_series']}.")
    return "\n".join(lines)


class MetastasisReportOperator(Operator):
    """Turn the bundle's patient output into the app's result (dict) and SR text.

    Named input:
        records: from :class:`BundleWorkflowOperator`.

    Named outputs:
        text: the SR narrative.
        result: the result dict (see :func:`patient_report`).
    """

    def __init__(self, fragment: Fragment, *args, model: BundleModel, **kwargs):
        self._model = model
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):  # noqa: D102 (SDK signature)
        spec.input("records")
        spec.output("text").condition(ConditionType.NONE)
        spec.output("result").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context):  # noqa: D102 (SDK signature)
        data = op_input.receive("records")
        record = data["records"][0]
        if "probability" not in record:
            raise ValueError(f"bundle output has no patient probability (keys: {sorted(record)})")
        result = patient_report(record, data["series"], self._model)
        logger.info("patient probability %.3f, threshold %.3f", result["probability"], result["threshold"])
        op_output.emit(report_text(result), "text")
        op_output.emit(result, "result")


class JSONWriterOperator(Operator):
    """Write a dict as a JSON file, atomically (a temporary name, then a rename).

    Named input:
        result: a JSON-serialisable dict.

    Args:
        fragment: the application.
        output_file: the file to write.
    """

    def __init__(self, fragment: Fragment, *args, output_file: str | os.PathLike, **kwargs):
        self._output_file = Path(output_file)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):  # noqa: D102 (SDK signature)
        spec.input("result")

    def compute(self, op_input, op_output, context):  # noqa: D102 (SDK signature)
        result = op_input.receive("result")
        self._output_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._output_file.with_name(f".{self._output_file.name}.{os.getpid()}.part")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, self._output_file)


class BrainMetastasisApp(Application):
    """Head CT DICOM series -> patient-level brain metastasis probability (Basic Text SR + ``result.json``).

    Args:
        argv: ``[python, program, -i DIR, -o DIR, -m MODEL, ...]`` (default ``sys.argv``).
        configs: bundle config names merged in order (default ``["inference"]``).
        overrides: config overrides for the bundle run (tests shrink the image size with it).
    """

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        configs: Sequence[str] | None = None,
        overrides: dict | None = None,
    ):
        super().__init__(list(argv) if argv is not None else None)
        self._configs = list(configs) if configs else None
        self._overrides = dict(overrides or {})

    def compose(self):  # noqa: D102 (SDK signature)
        app_context = Application.init_app_context(self.argv)
        input_dir, output_dir = Path(app_context.input_path), Path(app_context.output_path)
        model = resolve_model(app_context.model_path, bundle=BUNDLE, configs=self._configs)
        outputs = model.metadata.get("network_data_format", {}).get("outputs", {})
        if outputs.get("pred", {}).get("type") != "probabilities" or "metastasis" not in json.dumps(outputs):
            raise ModelError(f"{model.weights}: bundle {model.name!r} is not a brain metastasis classifier")
        logging.info("model: %s %s from %s (%s)", model.name, model.version, model.weights, model.kind)

        loader = StudyLoaderOperator(self, CountCondition(self, 1), input_folder=input_dir, name="study_loader_op")
        selector = SeriesSelectorOperator(self, rules=modality_rules("CT"), name="series_selector_op")
        workflow = BundleWorkflowOperator(self, model=model, overrides=self._overrides, name="bundle_workflow_op")
        report = MetastasisReportOperator(self, model=model, name="report_op")
        sr_writer = DICOMTextSRWriterOperator(
            self,
            output_folder=output_dir,
            model_info=model_info(model, BUNDLE),
            copy_tags=True,
            custom_tags={"SeriesDescription": f"Brain metastasis AI result {model.version}, not for clinical use"[:64]},
            name="sr_writer_op",
        )
        json_writer = JSONWriterOperator(self, output_file=output_dir / RESULT_FILE, name="json_writer_op")
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, workflow, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(workflow, report, {("records", "records")})
        self.add_flow(report, sr_writer, {("text", "text")})
        self.add_flow(selector, sr_writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(report, json_writer, {("result", "result")})
