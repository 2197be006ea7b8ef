"""The brain metastasis MONAI Deploy app: patient probability as a Basic Text SR and JSON, equal to the bundle's."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from deploy_helpers import bundle_copy, export_torchscript, write_series

from monai_apps.bundles import BUNDLES_DIR, run_bundle

BUNDLE = "brain_metastasis_ct_classification"
CONFIGS = ["inference", "cpu"]
#: the bundle's smoke-size settings (tests/smoke_cases), so one patient runs in seconds
SMALL = {"image_size": 64, "slice_mm": 10.0, "sw_batch_size": 8, "cpu_bf16": False}

pytestmark = pytest.mark.skipif(
    not (BUNDLES_DIR / BUNDLE / "configs" / "inference.json").is_file(), reason=f"bundles/{BUNDLE} does not exist yet"
)


@pytest.fixture(scope="module")
def brain_bundle(tmp_path_factory):
    return bundle_copy(BUNDLE, tmp_path_factory.mktemp("bundle"), CONFIGS, seed=1, sharpen=5.0)


@pytest.fixture(scope="module")
def head_series(tmp_path_factory):
    """A generated head CT with two metastases, 64 x 64 pixels of 3.5 mm, 10 mm slices, stored feet-first."""
    from monai_apps.data.synthetic_head import generate_head_ct

    ct = generate_head_ct(seed=8, shape=(64, 64, None), spacing=(3.5, 3.5, 10.0), n_metastases=2)
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, ct.image.shape[2] - 1
    folder = tmp_path_factory.mktemp("head") / "HEAD0008"
    image = np.ascontiguousarray(ct.image[:, :, ::-1])
    return write_series(folder, image, ct.affine @ flip, patient_id="HEAD0008", series_description="Head CT")


@pytest.mark.parametrize("form", ["bundle", "torchscript"])
def test_sr_and_json_report_the_bundles_patient_probability(form, brain_bundle, head_series, tmp_path):
    """MODEL as the bundle folder or as its TorchScript export: the bundle's own patient probability and slice."""
    from monai_apps.deploy.brain_metastasis import BrainMetastasisApp
    from monai_apps.deploy.runner import run_app

    model, extra = brain_bundle, ["--configs", "cpu"]
    if form == "torchscript":
        model, extra = export_torchscript(brain_bundle, CONFIGS, tmp_path / "model.ts"), []
    argv = ["brain_metastasis", "-i", str(head_series), "-o", str(tmp_path / "out"), "-m", str(model)]
    out = run_app(BrainMetastasisApp, argv + ["-l", "WARN", *extra], overrides=SMALL)
    result = json.loads((out / "result.json").read_text())
    # the bundle's own inference on the same series folder gives the same patient probability and slice
    bundle_out = tmp_path / "bundle"
    run_bundle(brain_bundle, CONFIGS, input_path=str(head_series), output_dir=str(bundle_out), num_workers=0, **SMALL)
    with open(tmp_path / "bundle" / "predictions.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert result["probability"] == pytest.approx(float(row["probability"]), abs=1e-5)
    assert result["threshold"] == pytest.approx(float(row["threshold"]), abs=1e-5)
    top = result["most_suspicious_slice"]
    assert top["series_index"] == int(row["suspicious_slice"])
    assert top["instance_number"] == int(row["suspicious_instance_number"])
    assert top["probability"] == pytest.approx(result["probability"], abs=1e-5), "max pooling over slices"
    # every analysed slice names its source instance; the series was stored feet-first, so the inferior-to-superior
    # index runs against the instance numbers
    sources = {}
    for f in head_series.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sources[str(ds.SOPInstanceUID)] = (int(ds.InstanceNumber), float(ds.ImagePositionPatient[2]))
    assert result["n_slices_in_series"] == len(sources)
    assert 0 < result["n_slices_analysed"] == len(result["slices"]) <= len(sources)
    for s in result["slices"]:
        number, z = sources[s["sop_instance_uid"]]
        assert number == s["instance_number"] and z == pytest.approx(s["z_mm"], abs=0.05)
        assert number == len(sources) - s["series_index"]
    assert result["patient_id"] == "HEAD0008" and result["bundle"]["id"] == BUNDLE
    assert result["model"]["kind"] == form
    # the SR: Basic Text SR of the same study and patient, its text carrying the probability
    (sr_file,) = list(out.glob("*.dcm"))
    sr = pydicom.dcmread(sr_file)
    src = pydicom.dcmread(next(head_series.iterdir()), stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11" and sr.Modality == "SR"
    assert sr.StudyInstanceUID == src.StudyInstanceUID and sr.PatientID == "HEAD0008"
    text = sr.ContentSequence[0].TextValue
    assert f"{result['probability']:.3f}" in text and result["finding"].upper() in text
    assert f"instance number {top['instance_number']}" in text


def test_wrong_model_is_refused(head_series, tmp_path, capsys):
    from monai_apps.deploy.brain_metastasis import BrainMetastasisApp
    from monai_apps.deploy.runner import main

    liver = bundle_copy("liver_tumor_ct_segmentation", tmp_path / "b", ["inference", "unet", "cpu"])
    argv = ["brain_metastasis", "-i", str(head_series), "-o", str(tmp_path / "out"), "-m", str(liver), "-l", "ERROR"]
    assert main(BrainMetastasisApp, argv) == 1
    assert "is not a brain metastasis classifier" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
