"""Model-zoo checks shared by every bundle in ``bundles/``, run offline.

Required files, metadata against the vendored schema, version in the changelog, ``verify_net_in_out``, TorchScript
export and reload, and ``ConfigWorkflow`` train (one tiny epoch through ``configs/smoke.json``), evaluate and
inference with ``check_properties``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from bundle_cases import SMOKE_CASES, assert_same_geometry
from conftest import REPO_ROOT

from monai_apps.bundles import BUNDLES_DIR, _forget_bundle_scripts, bundle_imports, list_bundles

BUNDLES = list_bundles()
REQUIRED = [
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "LICENSE",
]
SMOKE = str(REPO_ROOT / "configs" / "smoke.json")


def _configs(bundle: str, *names: str) -> list[str]:
    return [str(BUNDLES_DIR / bundle / "configs" / f"{n}.json") for n in names]


def test_bundles_exist():
    assert "liver_tumor_ct_segmentation" in BUNDLES
    assert set(BUNDLES) <= set(SMOKE_CASES), f"bundles without a smoke case: {set(BUNDLES) - set(SMOKE_CASES)}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_required_files(bundle):
    missing = [f for f in REQUIRED if not (BUNDLES_DIR / bundle / f).is_file()]
    assert not missing, f"{bundle} misses {missing}"
    if (BUNDLES_DIR / bundle / "scripts").exists():
        assert (BUNDLES_DIR / bundle / "scripts" / "__init__.py").is_file(), f"{bundle}/scripts is not a package"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_schema_and_changelog(bundle, schema_file):
    from monai.bundle import verify_metadata

    meta_file = BUNDLES_DIR / bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    jsonschema.validate(meta, json.loads(schema_file.read_text()))
    verify_metadata(meta_file=str(meta_file), filepath=str(schema_file))  # MONAI's own check, offline
    assert meta["version"] in meta["changelog"], f"version {meta['version']} has no changelog entry"
    assert meta["eval_metrics"] and all(0 < v for v in meta["eval_metrics"].values()), "eval_metrics not filled in"
    for name in meta["required_packages_version"]:
        assert name.replace("-", "_") not in ("torchvision", "timm"), "torchvision/timm cannot be installed here"


def test_bundle_imports_gives_sys_path_back():
    """A bundle root that ``monai.bundle`` leaves on ``sys.path`` inside the block must not shadow the next bundle."""
    first = BUNDLES_DIR / "brain_metastasis_ct_classification"
    second = BUNDLES_DIR / "abdominal_organs_ct_2d_segmentation"
    before = list(sys.path)
    with bundle_imports(first):
        sys.path.insert(1, str(first))  # as monai.bundle's run step does
        import scripts

        assert Path(scripts.__file__).parent.parent == first
    assert sys.path == before
    sys.path.insert(1, str(second))  # what MONAI does for the next bundle, without bundle_imports
    try:
        _forget_bundle_scripts()
        import scripts

        assert Path(scripts.__file__).parent.parent == second
    finally:
        sys.path.remove(str(second))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(bundle):
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        config_file=_configs(bundle, "inference"),
        bundle_root=str(BUNDLES_DIR / bundle),
        device="cpu",
        n=2,
    )


@pytest.mark.parametrize("bundle", BUNDLES)
def test_torchscript_export_and_reload(bundle, tmp_path):
    from monai.bundle import ConfigParser, ckpt_export

    parser = ConfigParser()
    parser.read_config(_configs(bundle, "inference"))
    parser["bundle_root"] = str(BUNDLES_DIR / bundle)
    net = parser.get_parsed_content("network_def")
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    ts_file = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt),
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        config_file=_configs(bundle, "inference"),
        bundle_root=str(BUNDLES_DIR / bundle),
    )
    loaded = torch.jit.load(str(ts_file))
    meta = json.loads((BUNDLES_DIR / bundle / "configs" / "metadata.json").read_text())
    spec = meta["network_data_format"]["inputs"]["image"]
    shape = [int(eval(str(s).replace("n", "2"))) if isinstance(s, str) else s for s in spec["spatial_shape"]]
    x = torch.rand(1, spec["num_channels"], *shape)
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), atol=1e-4)


def _workflow(bundle, configs, workflow_type, **overrides):
    """A ConfigWorkflow, initialized, whose properties are checked before it runs.

    ``check_properties`` resolves config items, so the bundle's ``scripts`` must already be importable (as when
    running from the bundle folder); ``monai.bundle run`` itself adds the bundle folder in its ``run`` step.
    """
    from monai.bundle import ConfigWorkflow

    root = BUNDLES_DIR / bundle
    if str(root) in sys.path:  # first, even when an earlier run left it further down
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    workflow = ConfigWorkflow(
        config_file=configs,
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(root),
        **overrides,
    )
    workflow.initialize()
    missing = workflow.check_properties()
    assert not missing, f"{bundle} {workflow_type}: missing properties {missing}"
    return workflow


@pytest.mark.parametrize("bundle", BUNDLES)
def test_config_workflow_train_evaluate_infer(bundle, tmp_path):
    case = SMOKE_CASES[bundle]
    dataset_dir = case.make_data(tmp_path / "data")
    common = {
        "dataset_dir": str(dataset_dir),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        **case.overrides,
    }

    train = _workflow(bundle, [*_configs(bundle, "train"), SMOKE], "train", **common)
    train.run()
    train.finalize()
    assert (tmp_path / "models" / "model.pt").is_file(), "no best checkpoint after one epoch with validation"
    assert list((tmp_path / "models").glob("checkpoint_epoch=1.pt")), "no resumable last checkpoint"
    assert train.parser.get_parsed_content("train#trainer").state.epoch == 1

    evaluate = _workflow(bundle, [*_configs(bundle, "train", "evaluate"), SMOKE], "eval", **common)
    evaluate.run()
    evaluate.finalize()
    metrics = dict(line.split(",") for line in (tmp_path / "eval" / "metrics.csv").read_text().split())
    assert metrics, "evaluation wrote no metrics"
    for name, value in metrics.items():
        if "dice" in name:
            assert 0.0 <= float(value) <= 1.0 or np.isnan(float(value)), (name, value)

    source = case.inference_input(dataset_dir)
    infer = _workflow(
        bundle,
        _configs(bundle, "inference"),
        "infer",
        input_path=source,
        ckpt_path=str(tmp_path / "models" / "model.pt"),
        output_dir=str(tmp_path / "infer"),
        num_workers=0,
        **case.overrides,
    )
    infer.run()
    infer.finalize()
    outputs = sorted((tmp_path / "infer").glob(case.output_glob))
    assert len(outputs) == 1, outputs
    if source.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        ref = nib.load(source)
        assert_same_geometry(outputs[0], np.empty(ref.shape), ref.affine)


def test_bundle_docs_name_their_figures():
    for bundle in BUNDLES:
        text = (BUNDLES_DIR / bundle / "docs" / "README.md").read_text()
        assert "python -m monai.bundle run" in text, f"{bundle}: docs/README.md shows no run command"
        assert "Dice" in text or "accuracy" in text.lower(), f"{bundle}: docs/README.md gives no figures"


def test_smoke_profile_only_sets_shared_keys():
    """The shared smoke profile must only touch settings every bundle declares at the top of train.json."""
    smoke = json.loads(Path(SMOKE).read_text())
    for bundle in BUNDLES:
        train = json.loads((BUNDLES_DIR / bundle / "configs" / "train.json").read_text())
        assert set(smoke) <= set(train), f"{bundle}/train.json lacks {set(smoke) - set(train)}"


BASE_CONFIGS = {"train", "evaluate", "inference", "multi_gpu_train", "metadata"}
#: overrides the docs merge at inference too (profiles and network variants); the others are training-only
INFERENCE_OVERRIDES = {"cpu", "unet", "cnn", "context"}
OVERRIDES = [
    (bundle, path.stem)
    for bundle in BUNDLES
    for path in sorted((BUNDLES_DIR / bundle / "configs").glob("*.json"))
    if path.stem not in BASE_CONFIGS
]


@pytest.mark.parametrize(("bundle", "override"), OVERRIDES)
def test_overrides_merge_over_the_configs_they_are_used_with(bundle, override):
    """An override file sets top-level scalars or ids that exist in every config it is merged over (MONAI's merge
    raises ``KeyError: query key`` for a nested id whose parent is missing, e.g. ``train#...`` over inference.json)."""
    from monai.bundle import ConfigParser

    combos = [("train",), ("train", "evaluate"), ("train", "multi_gpu_train")]
    if override in INFERENCE_OVERRIDES:
        combos.append(("inference",))
    keys = json.loads((BUNDLES_DIR / bundle / "configs" / f"{override}.json").read_text())
    for combo in combos:
        parser = ConfigParser()
        parser.read_config(_configs(bundle, *combo, override))  # raises on an id the base configs lack
        for key, value in keys.items():
            assert parser.get(key) == value, f"{bundle}: {override}.json sets {key} but {combo} hold {parser.get(key)}"


# Bundles are self-contained (a bundle never imports this repository's package), so a few helpers are vendored into
# several bundles' scripts/. The copies must stay identical: fix one, copy it to the others.
VENDORED_SCRIPTS = [
    (
        ["abdominal_organs_ct_2d_segmentation", "left_atrium_mri_2d_segmentation", "lung_tumor_ct_2d_segmentation"],
        ["checkpoints.py", "datalist.py", "inputs.py", "metrics.py", "precision.py", "report.py", "transforms.py"],
    ),
    (
        ["brain_metastasis_ct_classification", "organ_patch_ct_classification", "pneumonia_cxr_classification"],
        ["checkpoints.py"],
    ),
    (["organ_patch_ct_classification", "pneumonia_cxr_classification"], ["confusion.py", "pretrained.py"]),
    (
        [
            "brain_metastasis_ct_classification",
            "liver_tumor_ct_segmentation",
            "organ_patch_ct_classification",
            "pneumonia_cxr_classification",
        ],
        ["precision.py"],
    ),
    (
        [
            "abdominal_organs_ct_2d_segmentation",
            "left_atrium_mri_2d_segmentation",
            "liver_tumor_ct_segmentation",
            "lung_tumor_ct_2d_segmentation",
        ],
        ["writers.py"],
    ),
]


@pytest.mark.parametrize(("bundles", "names"), VENDORED_SCRIPTS)
def test_vendored_scripts_stay_identical(bundles, names):
    present = [b for b in bundles if b in BUNDLES]
    for name in names:
        texts = {b: (BUNDLES_DIR / b / "scripts" / name).read_text() for b in present}
        first = present[0]
        differing = [b for b in present[1:] if texts[b] != texts[first]]
        assert not differing, f"scripts/{name} of {differing} differs from {first}'s: copy the fixed one to all"
