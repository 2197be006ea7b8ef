"""The liver + tumour MONAI Deploy app: DICOM SEG and STL geometry against the bundle's own NIfTI inference."""

from __future__ import annotations

import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from deploy_helpers import (
    bundle_copy,
    export_torchscript,
    nifti_slices_for_instances,
    seg_label_frames,
    source_instances,
    write_series,
)

from monai_apps.bundles import run_bundle
from monai_apps.deploy.liver_seg import BUNDLE, LiverTumorSegApp
from monai_apps.deploy.runner import main, run_app

CONFIGS = ["inference", "unet", "cpu"]
REAL_SERIES = ("totalsegmentator", "reference_files", "example_ct_dicom")


@pytest.fixture(scope="module")
def liver_bundle(tmp_path_factory):
    """A copy of the liver bundle with untrained CPU-profile weights in models/model.pt."""
    return bundle_copy(BUNDLE, tmp_path_factory.mktemp("bundle"), CONFIGS)


def _flip_all(image: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same volume stored with every voxel axis reversed (LPS-like storage, slices head to feet)."""
    flip = np.eye(4)
    for ax, n in enumerate(image.shape):
        flip[ax, ax], flip[ax, 3] = -1.0, n - 1
    return np.ascontiguousarray(image[::-1, ::-1, ::-1]), affine @ flip


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A small generated abdomen with non-square pixels: its NIfTI (RAS storage) and a DICOM series of the same
    volume stored with every axis reversed (rows right-to-left, columns anterior-to-posterior, slices descending)."""
    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
    from monai_apps.data.writers import write_nifti

    root = tmp_path_factory.mktemp("generated")
    ct = generate_abdominal_ct(seed=11, shape=(72, 60, 22), spacing=(4.5, 5.0, 6.0), n_tumours=2)
    write_nifti(root / "ct.nii.gz", ct.image, ct.affine)
    image, affine = _flip_all(ct.image, ct.affine)
    write_series(root / "series", image, affine, patient_id="GEN0011")
    return root


def _run(series, model, out, **kwargs):
    argv = ["liver_seg", "-i", str(series), "-o", str(out), "-m", str(model), "-l", "WARN"]
    return run_app(LiverTumorSegApp, argv + [f"--configs={','.join(CONFIGS[1:])}"], **kwargs)


def _bundle_nifti(bundle, source, out, **overrides):
    run_bundle(bundle, CONFIGS, input_path=str(source), output_dir=str(out), num_workers=0, **overrides)
    (nii,) = list(out.glob("*_seg.nii.gz"))
    return nii


def _check_seg(out, series, nifti):
    """The SEG reads back, references every source instance, and its frames equal the NIfTI slices."""
    import highdicom as hd

    (seg_file,) = list(out.glob("*.dcm"))
    ds = pydicom.dcmread(seg_file)
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    seg = hd.seg.segread(str(seg_file))
    sources = source_instances(series)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == set(sources), "the SEG must reference every source instance, and only those"
    frame_refs = {
        f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for f in ds.PerFrameFunctionalGroupsSequence
    }
    assert frame_refs <= set(sources) and frame_refs, "every frame names the source instance it lies on"
    labels = [s.SegmentLabel for s in ds.SegmentSequence]
    assert labels == ["Liver", "Liver tumour"]
    liver, tumour = ds.SegmentSequence
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT Liver
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91772007"  # Organ
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # Neoplasm
    assert tumour.AnatomicRegionSequence[0].CodeValue == "10200004"  # ... of the liver
    algo = liver.SegmentationAlgorithmIdentificationSequence[0]
    assert (algo.AlgorithmName, algo.AlgorithmVersion) == (BUNDLE, "0.1.0")
    assert liver.SegmentAlgorithmType == "AUTOMATIC"
    uids = list(sources)
    got = seg_label_frames(seg_file, uids, 2)
    expected = nifti_slices_for_instances(nifti, [sources[u][0] for u in uids])
    assert got.shape == expected.shape
    assert np.count_nonzero(expected) > 0, "the test network segments nothing; pick another seed"
    np.testing.assert_array_equal(got, expected)
    return got


def test_real_series_seg_matches_nifti_inference(real_dir, liver_bundle, tmp_path):
    """The real JPEG2000 series with blanked UIDs: SEG frames equal the bundle's NIfTI inference slice by slice."""
    series = real_dir.joinpath(*REAL_SERIES)
    out = _run(series, liver_bundle, tmp_path / "out", stl=False)
    nifti = _bundle_nifti(liver_bundle, series, tmp_path / "nifti")
    got = _check_seg(out, series, nifti)
    assert got.shape == (20, 512, 512)
    # the anonymised series has blank SOP Instance UIDs: the SEG references the file-meta UIDs instead
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    first = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert first.startswith("1.3.12.2.1107.5.1.4.60064.")


def test_generated_flipped_series_matches_nifti(generated, liver_bundle, tmp_path):
    """A series stored with reversed axes and non-square pixels: SEG == ITK-read NIfTI inference, voxel for voxel,
    and the same anatomy as the inference on the RAS-stored NIfTI file (no flipped or mirrored axes)."""
    out = _run(generated / "series", liver_bundle, tmp_path / "out")
    nifti = _bundle_nifti(liver_bundle, generated / "series", tmp_path / "nifti")
    got = _check_seg(out, generated / "series", nifti)
    # the same labels, found from the NIfTI file of the un-flipped volume, at each instance's world position
    ref = nib.load(_bundle_nifti(liver_bundle, generated / "ct.nii.gz", tmp_path / "nifti_ras"))
    data, inv = np.asarray(ref.dataobj), np.linalg.inv(ref.affine)
    sources = source_instances(generated / "series")
    agree = total = 0
    for frame, uid in zip(got, sources, strict=True):
        ipp, ds = sources[uid]
        rows, cols = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
        cosines = np.array(ds.ImageOrientationPatient, dtype=float)
        row_dir, col_dir = cosines[:3], cosines[3:]
        dr, dc = (float(v) for v in ds.PixelSpacing)
        lps = ipp + cols[..., None] * dc * row_dir + rows[..., None] * dr * col_dir
        ras = np.concatenate([-lps[..., :2], lps[..., 2:], np.ones(lps.shape[:-1] + (1,))], axis=-1)
        ijk = np.rint(ras @ inv.T).astype(int)[..., :3]
        agree += int((data[ijk[..., 0], ijk[..., 1], ijk[..., 2]] == frame).sum())
        total += frame.size
    assert agree / total > 0.995, f"only {agree / total:.4f} of pixels agree with the RAS-stored NIfTI inference"
    # the liver surface lies where the segmentation is, in patient coordinates (LPS mm)
    _check_stl(out / "stl" / "liver.stl", nifti)


def _check_stl(stl_file, nifti):
    import trimesh
    from skimage.measure import label

    img = nib.load(str(nifti))
    mask = np.asarray(img.dataobj) > 0
    cc = label(mask)
    largest = cc == (np.argmax(np.bincount(cc.ravel())[1:]) + 1)
    idx = np.argwhere(largest)
    lps = (img.affine @ np.c_[idx, np.ones(len(idx))].T).T[:, :3] * [-1, -1, 1]
    spacing = np.linalg.norm(img.affine[:3, :3], axis=0)
    mesh = trimesh.load(str(stl_file))
    voxel_volume = float(np.prod(spacing))
    assert abs(mesh.volume - largest.sum() * voxel_volume) < 0.1 * largest.sum() * voxel_volume, "mesh volume"
    np.testing.assert_allclose(mesh.bounds[0], lps.min(0) - spacing / 2, atol=spacing.max())
    np.testing.assert_allclose(mesh.bounds[1], lps.max(0) + spacing / 2, atol=spacing.max())


def test_torchscript_export_gives_the_same_seg(generated, liver_bundle, tmp_path):
    """MODEL as the bundle's TorchScript export (configs embedded): same SEG as the NIfTI inference."""
    ts = export_torchscript(liver_bundle, CONFIGS, tmp_path / "model.ts")
    argv = ["liver_seg", "-i", str(generated / "series"), "-o", str(tmp_path / "out"), "-m", str(ts), "-l", "WARN"]
    out = run_app(LiverTumorSegApp, argv, stl=False)
    # the TorchScript module runs in float32: compare with the bundle run without bfloat16 autocast
    nifti = _bundle_nifti(liver_bundle, generated / "series", tmp_path / "nifti", cpu_bf16=False)
    _check_seg(out, generated / "series", nifti)


def test_mixed_folder_skips_the_mr_series(generated, liver_bundle, tmp_path, capsys):
    """A folder with a CT and an MR series: the MR series is skipped with a message; the SEG is of the CT."""
    import shutil

    from monai_apps.data.writers import write_dicom_series

    folder = tmp_path / "study"
    shutil.copytree(generated / "series", folder / "ct")
    ct = pydicom.dcmread(next((folder / "ct").iterdir()), stop_before_pixels=True)
    write_dicom_series(
        folder / "mr",
        np.zeros((16, 16, 3)),
        np.eye(4),
        modality="MR",
        series_description="T1 axial",
        study_uid=ct.StudyInstanceUID,
    )
    out = _run(folder, liver_bundle, tmp_path / "out", stl=False)
    log = capsys.readouterr().err  # the SDK sends its log records to stderr
    assert "skipped series" in log and "(MR, T1 axial, 3 instances): does not match the selection rules" in log
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert ds.StudyInstanceUID == ct.StudyInstanceUID and ds.PatientID == ct.PatientID


@pytest.mark.parametrize("case", ["mr_only", "truncated", "empty", "no_weights", "wrong_bundle", "wrong_variant"])
def test_bad_input_is_one_line_and_leaves_no_output(case, generated, liver_bundle, tmp_path, capsys):
    import shutil

    from monai_apps.data.writers import write_dicom_series

    series, model, configs = tmp_path / "series", liver_bundle, "unet,cpu"
    if case == "mr_only":
        write_dicom_series(series, np.zeros((16, 16, 3)), np.eye(4), modality="MR", series_description="T1 axial")
        expected = "no CT series to process; skipped: series"
    else:
        shutil.copytree(generated / "series", series)
    if case == "truncated":
        victim = sorted(series.iterdir())[5]
        victim.write_bytes(victim.read_bytes()[:400])
        expected = f"{victim}: truncated"
    elif case == "empty":
        shutil.rmtree(series)
        series.mkdir()
        (series / "README.txt").write_text("not DICOM")
        expected = f"{series}: no DICOM instances found"
    elif case == "no_weights":
        model = tmp_path / "bundle"
        shutil.copytree(liver_bundle, model, ignore=shutil.ignore_patterns("models"))
        expected = f"{model / 'models'}: no model.ts or model.pt"
    elif case == "wrong_bundle":
        model = tmp_path / "bundle"
        shutil.copytree(liver_bundle, model)
        meta = (model / "configs" / "metadata.json").read_text().replace('"2": "liver tumour"', '"2": "spleen"')
        (model / "configs" / "metadata.json").write_text(meta)
        expected = "but this app writes the segments ['liver', 'liver tumour']"
    elif case == "wrong_variant":  # the weights are the UNet variant's; without unet.json the network is a DynUNet
        configs = "cpu"
        expected = "weights do not fit the network of configs [inference, cpu]"
    out = tmp_path / "out"
    argv = ["liver_seg", "-i", str(series), "-o", str(out), "-m", str(model), "-l", "ERROR", "--configs", configs]
    assert main(LiverTumorSegApp, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name], "staging folder left behind"


def test_module_entry_point_runs_the_app(generated, liver_bundle, tmp_path, monkeypatch, capsys):
    """``python -m monai_apps.deploy.liver_seg ...`` (its ``__main__``, run in this process): SEG + STL, status 0."""
    import runpy

    out = tmp_path / "out"
    argv = ["liver_seg", "-i", str(generated / "series"), "-o", str(out), "-m", str(liver_bundle)]
    monkeypatch.setattr(sys, "argv", [*argv, "--configs", "unet,cpu", "-l", "WARN"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("monai_apps.deploy.liver_seg", run_name="__main__")
    assert info.value.code == 0
    assert f"outputs in {out}" in capsys.readouterr().out
    assert len(list(out.glob("*.dcm"))) == 1 and (out / "stl" / "liver.stl").stat().st_size > 1000


@pytest.mark.parametrize("max_faces", [None, 2000])
def test_surface_mesh_lies_on_the_mask_and_is_coarsened_when_huge(max_faces):
    """An ellipsoid in a grid with an origin and anisotropic voxels: the mesh keeps its place and volume, and a
    face limit coarsens the grid rather than the anatomy."""
    from monai_apps.deploy.operators.stl import surface_mesh

    spacing, origin = np.array([0.8, 0.9, 2.0]), np.array([-100.0, 50.0, -700.0])
    idx = np.indices((90, 80, 30)).transpose(1, 2, 3, 0) * spacing
    centre, radii = np.array([36.0, 36.0, 30.0]), np.array([25.0, 20.0, 18.0])
    mask = (((idx - centre) / radii) ** 2).sum(-1) <= 1
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = np.diag(spacing), origin
    mesh = surface_mesh(mask, affine, max_faces=max_faces)
    full = surface_mesh(mask, affine, max_faces=None)
    if max_faces:
        assert len(mesh.faces) <= max_faces < len(full.faces)
    assert mesh.is_watertight
    expected = 4 / 3 * np.pi * np.prod(radii)
    assert mesh.volume == pytest.approx(expected, rel=0.05)
    np.testing.assert_allclose(mesh.bounds, [origin + centre - radii, origin + centre + radii], atol=2 * spacing.max())
