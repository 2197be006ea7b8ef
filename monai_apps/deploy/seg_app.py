"""The DICOM-in, DICOM-SEG-out application shared by the segmentation apps.

Pipeline (MONAI Deploy App SDK operators, run in-process by Holoscan)::

    StudyLoaderOperator (DICOMDataLoaderOperator)
      -> SeriesSelectorOperator (DICOMSeriesSelectorOperator, Modality CT)
      -> DICOMSeriesToVolumeOperator
      -> BundleInferenceOperator (MonaiBundleInferenceOperator on the bundle's own inference config)
      -> DICOMSegmentationWriterOperator (highdicom; SNOMED CT codes; algorithm = bundle id + version)
      -> SurfaceMeshOperator (STLConversionOperator with patient-space geometry), optional
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import Application
from monai.deploy.core.domain import Image
from monai.deploy.core.io_type import IOType
from monai.deploy.operators.dicom_seg_writer_operator import DICOMSegmentationWriterOperator
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator
from monai.deploy.operators.monai_bundle_inference_operator import IOMapping

from .bundle_model import resolve_model
from .operators import BundleInferenceOperator, SeriesSelectorOperator, StudyLoaderOperator, modality_rules
from .operators.stl import SurfaceMeshOperator
from .segmentation import check_segment_channels, model_info, segment_descriptions

__all__ = ["SegmentationApp"]


class SegmentationApp(Application):
    """A CT DICOM series -> DICOM SEG app over one bundle; subclasses set the class attributes.

    Attributes:
        BUNDLE: the bundle id (its folder name in ``bundles/``), also the SEG's algorithm name.
        SEGMENTS: the bundle's output channels 1.. by name (keys of ``segmentation.SEGMENT_CODES``).
        SERIES_DESCRIPTION: the SEG's Series Description (at most 64 characters with the version).
        STL: ``(file name, label values)`` of an optional surface mesh, or ``None``.

    Args:
        argv: ``[python, program, -i DIR, -o DIR, -m MODEL, ...]`` (default ``sys.argv``).
        configs: bundle config names merged in order (default ``["inference"]``; a TorchScript export uses the
            configs embedded in it).
        stl: write the surface mesh when the app has one.
        overrides: bundle config values set before parsing (for example ``{"cpu_bf16": False}``).
    """

    BUNDLE: str = ""
    SEGMENTS: tuple[str, ...] = ()
    SERIES_DESCRIPTION: str = "AI segmentation"
    STL: tuple[str, list[int]] | None = None

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        configs: Sequence[str] | None = None,
        stl: bool = True,
        overrides: dict | None = None,
    ):
        super().__init__(list(argv) if argv is not None else None)
        self._configs = list(configs) if configs else None
        self._stl = stl
        self._overrides = dict(overrides or {})

    def compose(self):  # noqa: D102 (SDK signature)
        app_context = Application.init_app_context(self.argv)
        input_dir, output_dir = Path(app_context.input_path), Path(app_context.output_path)
        model = resolve_model(app_context.model_path, bundle=self.BUNDLE, configs=self._configs)
        check_segment_channels(model, self.SEGMENTS)
        logging.info("model: %s %s from %s (%s)", model.name, model.version, model.weights, model.kind)

        loader = StudyLoaderOperator(self, CountCondition(self, 1), input_folder=input_dir, name="study_loader_op")
        selector = SeriesSelectorOperator(self, rules=modality_rules("CT"), name="series_selector_op")
        to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_vol_op")
        inference = BundleInferenceOperator(
            self,
            app_context=app_context,
            model=model,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            overrides=self._overrides,
            name="bundle_inference_op",
        )
        seg_writer = DICOMSegmentationWriterOperator(
            self,
            segment_descriptions=segment_descriptions(model, self.BUNDLE, self.SEGMENTS),
            model_info=model_info(model, self.BUNDLE),
            custom_tags={"SeriesDescription": f"{self.SERIES_DESCRIPTION} {model.version}"[:64]},
            output_folder=output_dir,
            name="dicom_seg_writer",
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, inference, {("image", "image")})
        self.add_flow(selector, seg_writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(inference, seg_writer, {("pred", "seg_image")})
        if self._stl and self.STL is not None:
            name, labels = self.STL
            stl = SurfaceMeshOperator(self, output_file=output_dir / "stl" / name, class_id=labels, name="stl_op")
            self.add_flow(inference, stl, {("pred", "image")})
