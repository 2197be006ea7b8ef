"""The SDK's ``MonaiBundleInferenceOperator`` running this repository's bundles' own inference configs.

What differs from the SDK operator, and why:

* the model is a bundle folder, a TorchScript export or a ``.pt`` state dict (:mod:`..bundle_model`), and a state
  dict is loaded weights-only with ``map_location`` (the SDK loads folder bundles without ``weights_only``);
* ``LoadImage*``/``SaveImage*`` are removed from the config *before* it is instantiated (the SDK instantiates the
  bundle's ``SaveImaged``, whose atomic writer lives in the bundle's ``scripts``, and filters it afterwards);
* the bundle's ``scripts`` package is importable while its config is parsed and run, and no other bundle's
  ``scripts`` is (every bundle names its package ``scripts``);
* the image affine pairs each in-plane direction with its own pixel spacing (the SDK swaps the two spacings,
  which only matters for non-square pixels).

Pre-processing, inferer (a sliding window or a slice-wise ``SliceInferer``), post-processing (``Invertd`` back to
the input grid) all come from the bundle's config; the conversion between the SDK's ``Image`` (``DHW``) and
MONAI's channel-first ``WHD`` tensors is the SDK operator's own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from monai.deploy.core import AppContext, Fragment
from monai.deploy.operators.monai_bundle_inference_operator import (
    BundleConfigNames,
    IOMapping,
    MonaiBundleInferenceOperator,
)

from ..bundle_model import BundleModel, bundle_scripts, inference_parser, load_network
from .stl import dicom_affine

__all__ = ["BundleInferenceOperator"]

logger = logging.getLogger(__name__)


class BundleInferenceOperator(MonaiBundleInferenceOperator):
    """Run a bundle's inference config on an in-memory image.

    Named input:
        image: ``Image`` from ``DICOMSeriesToVolumeOperator`` (``DHW`` array + DICOM geometry).

    Named output:
        pred: ``Image`` (``DHW`` uint8 label map on the input grid) for segmentation bundles.

    Args:
        fragment: the application.
        app_context: the SDK application context.
        model: the resolved model (see :func:`monai_apps.deploy.bundle_model.resolve_model`).
        input_mapping: operator inputs (their labels are the bundle's input keys).
        output_mapping: operator outputs (their labels are the bundle's output keys).
        overrides: config values set before parsing, for example ``{"device": "$torch.device('cpu')"}``.
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        app_context: AppContext,
        model: BundleModel,
        input_mapping: list[IOMapping],
        output_mapping: list[IOMapping],
        overrides: dict[str, Any] | None = None,
        **kwargs,
    ):
        self._bundle_model = model
        self._overrides = dict(overrides or {})
        names = [f.stem for f in model.config_files]
        super().__init__(
            fragment,
            *args,
            app_context=app_context,
            input_mapping=input_mapping,
            output_mapping=output_mapping,
            model_name=model.name,
            bundle_path=None,
            bundle_config_names=BundleConfigNames(config_names=names),
            **kwargs,
        )

    def _init_config(self, config_names):  # noqa: D102 (SDK signature)
        import torch
        from monai.inferers import SimpleInferer

        del config_names  # the configs are the resolved model's
        parser = inference_parser(self._bundle_model, self._overrides)
        self._parser = parser
        self._device = parser.get_parsed_content("device") if "device" in parser else torch.device("cpu")
        self._inferer = parser.get_parsed_content("inferer") if "inferer" in parser else SimpleInferer()
        meta = parser["_meta_"]
        self._inputs = meta["network_data_format"]["inputs"]
        self._outputs = meta["network_data_format"]["outputs"]
        self._preproc = self._get_compose(self._bundle_config_names.preproc_name, ())
        self._postproc = self._get_compose(self._bundle_config_names.postproc_name, ())
        self._meta_key_postfix = self._get_meta_key_postfix(self._preproc)
        self._model_network = load_network(self._bundle_model, parser, self._device)
        logger.info(
            "bundle %s %s (%s, %s): %s",
            self._bundle_model.name,
            self._bundle_model.version,
            self._bundle_model.kind,
            self._bundle_model.weights,
            " -> ".join(type(t).__name__ for t in self._preproc.transforms),
        )

    def _convert_from_image_dicom_source(self, img):  # noqa: D102 (SDK signature)
        from monai.utils import MetaKeys

        value, meta = super()._convert_from_image_dicom_source(img)
        lps = dicom_affine(img.metadata())  # the SDK's affine swaps the in-plane spacings of non-square pixels
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        meta[MetaKeys.ORIGINAL_AFFINE] = ras
        meta[MetaKeys.AFFINE] = ras.copy()
        meta["spacing"] = np.linalg.norm(lps[:3, :3], axis=0)
        return value, meta

    def compute(self, op_input, op_output, context):  # noqa: D102 (SDK signature)
        import torch
        from monai.data import MetaTensor
        from monai.utils import convert_to_dst_type, ensure_tuple, first

        with bundle_scripts(self._bundle_model.root):
            if not self._init_completed:
                with self._lock:
                    self._init_config(None)
                    self._init_completed = True
            first_name, *other_names = list(self._inputs.keys())
            with torch.no_grad():
                inputs: dict[str, Any] = {}
                start = time.perf_counter()
                for name in self._inputs.keys():
                    value, meta = self._receive_input(name, op_input, context)
                    value = convert_to_dst_type(value, dst=value)[0]
                    inputs[name] = MetaTensor.ensure_torch_and_prune_meta(value, dict(meta or {}))
                inputs = self.pre_process(inputs)
                first_value = inputs[first_name]
                batch = inputs.pop(first_name)[None].to(self._device)
                others = {k: v[None].to(self._device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
                others.update({k: inputs[k] for k in other_names if not isinstance(inputs[k], torch.Tensor)})
                t_pre = time.perf_counter() - start
                start = time.perf_counter()
                outputs = self.predict(data=batch, **others)
                t_infer = time.perf_counter() - start
                start = time.perf_counter()
                inputs[first_name] = first_value
                outputs = self.post_process(ensure_tuple(outputs)[0], **{self.kw_preprocessed_inputs: inputs})
                t_post = time.perf_counter() - start
            logger.info("pre-processing %.1f s, inference %.1f s, post-processing %.1f s", t_pre, t_infer, t_post)
            if isinstance(outputs, (tuple, list)):
                output_dict = dict(zip(self._outputs.keys(), outputs, strict=False))
            elif not isinstance(outputs, dict):
                output_dict = {first(self._outputs.keys()): outputs}
            else:
                output_dict = outputs
            for name in self._outputs.keys():
                self._send_output(output_dict[name], name, first_value.meta, op_output, context)
