"""The abdominal organs MONAI Deploy app on the 2D bundle: a five-segment DICOM SEG, slice-wise inference."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from deploy_helpers import bundle_copy, nifti_slices_for_instances, seg_label_frames, source_instances, write_series

from monai_apps.bundles import BUNDLES_DIR, run_bundle

BUNDLE = "abdominal_organs_ct_2d_segmentation"
CONFIGS = ["inference", "cpu"]

pytestmark = pytest.mark.skipif(
    not (BUNDLES_DIR / BUNDLE / "configs" / "inference.json").is_file(), reason=f"bundles/{BUNDLE} does not exist yet"
)


@pytest.fixture(scope="module")
def organs_bundle(tmp_path_factory):
    return bundle_copy(BUNDLE, tmp_path_factory.mktemp("bundle"), CONFIGS, seed=3, sharpen=20.0)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A small generated abdomen stored as a DICOM series with reversed column order (LPS-like)."""
    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct

    ct = generate_abdominal_ct(seed=4, shape=(64, 56, 12), spacing=(6.0, 6.0, 10.0), n_tumours=1)
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = ct.image.shape[0] - 1
    folder = tmp_path_factory.mktemp("series") / "ct"
    return write_series(folder, np.ascontiguousarray(ct.image[::-1]), ct.affine @ flip, patient_id="GEN0004")


def test_five_organ_seg_matches_the_slicewise_nifti_inference(organs_bundle, series, tmp_path):
    from monai_apps.deploy.abdominal_organs import SEGMENTS, AbdominalOrgansSegApp
    from monai_apps.deploy.runner import run_app

    argv = ["abdominal_organs", "-i", str(series), "-o", str(tmp_path / "out"), "-m", str(organs_bundle)]
    out = run_app(AbdominalOrgansSegApp, argv + ["-l", "WARN", "--configs", "cpu"])
    (seg_file,) = list(out.glob("*.dcm"))
    ds = pydicom.dcmread(seg_file)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Liver", "Spleen", "Left kidney", "Right kidney", "Bowel"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in ds.SegmentSequence] == [
        "10200004",
        "78961009",
        "18639004",
        "9846003",
        "113276009",
    ]
    algo = ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == BUNDLE
    run_bundle(organs_bundle, CONFIGS, input_path=str(series), output_dir=str(tmp_path / "nifti"), num_workers=0)
    (nifti,) = list((tmp_path / "nifti").glob("*_seg.nii.gz"))
    sources = source_instances(series)
    uids = list(sources)
    got = seg_label_frames(seg_file, uids, len(SEGMENTS))
    expected = nifti_slices_for_instances(nifti, [sources[u][0] for u in uids])
    assert len(np.unique(expected)) > 2, "the test network should predict several organs"
    np.testing.assert_array_equal(got, expected)
