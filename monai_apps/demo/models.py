"""Which bundles the demo shows, with which weights, and the inference runs through ``monai.bundle``.

A tab is shown only for a bundle that exists in ``bundles/`` and passes a quick load check: its metadata reads, its
inference config parses and its network builds. Weights, in order: the path given on the command line, the
bundle's own ``models/model.pt`` (or ``model.ts``), else an untrained network (the tab says so: the pipeline runs
end to end on a fresh install, but its answers mean nothing until the bundle is trained).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_apps.bundles import BUNDLES_DIR
from monai_apps.deploy.bundle_model import BundleModel, bundle_scripts, resolve_model, run_inference_workflow

__all__ = ["DEMO_BUNDLES", "DemoBundle", "DemoModel", "check_bundle", "prepare_models", "run_bundle_inference"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoBundle:
    """A bundle the demo has a tab for.

    Attributes:
        id: the bundle folder name.
        title: the tab title.
        configs: configs merged for inference (the CPU profile the project trains with).
    """

    id: str
    title: str
    configs: tuple[str, ...] = ("inference", "cpu")


DEMO_BUNDLES: dict[str, DemoBundle] = {
    "liver": DemoBundle("liver_tumor_ct_segmentation", "3D liver + tumour", ("inference", "unet", "cpu")),
    "organs": DemoBundle("abdominal_organs_ct_2d_segmentation", "2D abdominal organs"),
    "patch": DemoBundle("organ_patch_ct_classification", "Organ patch classification"),
    "brain": DemoBundle("brain_metastasis_ct_classification", "Brain metastasis"),
    "cxr": DemoBundle("pneumonia_cxr_classification", "Pneumonia X-ray"),
}


@dataclass
class DemoModel:
    """A bundle ready to run: its resolved model and whether its weights were trained.

    Attributes:
        bundle: the tab's bundle.
        model: the resolved model (configs and weights).
        trained: ``False`` when the demo made untrained weights because none were found.
        source: where the weights came from (for the tab's note).
    """

    bundle: DemoBundle
    model: BundleModel
    trained: bool
    source: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """One line for the tab: the bundle, its version and the weights."""
        head = f"`{self.bundle.id}` {self.model.version}, configs {'+'.join(f.stem for f in self.model.config_files)}"
        if self.trained:
            return f"{head}; weights: {self.source}"
        return (
            f"{head}; **untrained weights** (no `models/model.pt` in the bundle): the pipeline runs, the answers mean "
            f"nothing. Train the bundle or start the demo with `--weights '{{\"{self.bundle.id}\": PATH}}'`."
        )


def check_bundle(bundle: DemoBundle) -> str | None:
    """``None`` if the bundle loads (metadata, inference config, network), else the reason it does not."""
    import torch
    from monai.bundle import ConfigParser

    root = BUNDLES_DIR / bundle.id
    files = [root / "configs" / f"{c}.json" for c in bundle.configs]
    if not (root / "configs" / "metadata.json").is_file():
        return f"{root}: no such bundle"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return f"missing config {', '.join(missing)}"
    try:
        parser = ConfigParser()
        parser.read_meta(str(root / "configs" / "metadata.json"))
        parser.read_config([str(f) for f in files])
        parser["bundle_root"] = str(root)
        with bundle_scripts(root):
            net = parser.get_parsed_content("network_def")
        if not isinstance(net, torch.nn.Module):
            return "network_def is not a torch module"
    except Exception as err:  # a bundle under construction can fail in any way
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def _untrained_weights(bundle: DemoBundle, cache: Path) -> Path:
    """An initialised network of the bundle's configs, saved once (seed 0) in the cache."""
    import torch
    from monai.bundle import ConfigParser

    root = BUNDLES_DIR / bundle.id
    path = cache / "untrained" / bundle.id / f"{'_'.join(bundle.configs)}.pt"
    if path.is_file():
        return path
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / f"{c}.json") for c in bundle.configs])
    parser["bundle_root"] = str(root)
    with bundle_scripts(root):
        torch.manual_seed(0)
        net = parser.get_parsed_content("network_def")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def prepare_models(
    cache: Path,
    weights: Mapping[str, str] | None = None,
    configs: Mapping[str, Sequence[str]] | None = None,
    only: Sequence[str] | None = None,
) -> tuple[dict[str, DemoModel], dict[str, str]]:
    """The demo's models by tab key, and the reasons the other tabs are hidden.

    Args:
        cache: the demo's cache folder (untrained weights go there).
        weights: bundle id -> weights (a bundle folder, a TorchScript export or a ``.pt`` state dict).
        configs: bundle id -> config names, replacing the default variant.
        only: tab keys to prepare (default: all).
    """
    weights, configs = dict(weights or {}), dict(configs or {})
    ready, hidden = {}, {}
    for key, bundle in DEMO_BUNDLES.items():
        if only is not None and key not in only:
            continue
        if bundle.id in configs:
            names = [c for c in configs[bundle.id]]
            bundle = DemoBundle(bundle.id, bundle.title, tuple(["inference", *[c for c in names if c != "inference"]]))
        reason = check_bundle(bundle)
        if reason is not None:
            hidden[key] = reason
            logger.warning("demo tab %r hidden: %s", bundle.title, reason)
            continue
        root = BUNDLES_DIR / bundle.id
        if bundle.id in weights:
            model = resolve_model(weights[bundle.id], bundle=bundle.id, configs=bundle.configs)
            ready[key] = DemoModel(bundle, model, True, str(weights[bundle.id]))
        elif (root / "models" / "model.pt").is_file() or (root / "models" / "model.ts").is_file():
            model = resolve_model(root, bundle=bundle.id, configs=bundle.configs)
            ready[key] = DemoModel(bundle, model, True, str(model.weights))
        else:
            path = _untrained_weights(bundle, cache)
            model = resolve_model(path, bundle=bundle.id, configs=bundle.configs)
            ready[key] = DemoModel(bundle, model, False, "untrained")
    return ready, hidden


def run_bundle_inference(demo_model: DemoModel, input_path: Path, output_dir: Path, **overrides) -> list[dict]:
    """Run the bundle's inference config on one staged input (``monai.bundle`` ``ConfigWorkflow``).

    Returns:
        the evaluator's records (see :func:`monai_apps.deploy.bundle_model.run_inference_workflow`); files the
        bundle writes (label maps, patches, CAM overlays, CSVs) are in ``output_dir``.
    """
    settings = {**demo_model.overrides, **overrides}
    return run_inference_workflow(demo_model.model, input_path, output_dir, **settings)
