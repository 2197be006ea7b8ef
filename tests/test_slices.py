"""The 2D slice pipeline: layouts, class mapping, normalisation, filters, patient split, reassembly, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_apps.data.cohort import generate_cohort
from monai_apps.data.slices import (
    CLASS_PRESETS,
    Case,
    SliceError,
    SliceSettings,
    discover_cases,
    load_case,
    prepare_slices,
    reassemble,
    split_by_patient,
)
from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
from monai_apps.data.writers import write_dicom_series, write_nifti

SHAPE, SPACING = (48, 40, 16), (7.0, 7.0, 16.0)


@pytest.fixture(scope="module")
def ts_cohort(tmp_path_factory) -> Path:
    """Five tiny TotalSegmentator subjects, the last one held out (``cohort.json`` split ``test``)."""
    root = tmp_path_factory.mktemp("ts") / "subjects"
    return generate_cohort(
        root, n_cases=4, n_test=1, seed=2, layout="totalsegmentator", shape=SHAPE, spacing=SPACING, progress=False
    )


@pytest.fixture(scope="module")
def prepared(ts_cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    return prepare_slices(ts_cohort, out, size=None, keep_empty=1.0, progress=False)


def _datalist(path: Path) -> dict:
    return json.loads(path.read_text())


def _lps_case(tmp_path: Path, seed: int = 4) -> tuple[Path, Path, np.ndarray]:
    """A generated case with TotalSegmentator ids (liver 5, spleen 1), stored in LPS axis order like DICOM."""
    ct = generate_abdominal_ct(seed, shape=SHAPE, spacing=SPACING)
    labels = np.zeros(ct.labels.shape, np.uint8)
    labels[ct.mask("liver")] = 5
    labels[ct.mask("spleen")] = 1
    return (
        write_nifti(tmp_path / "img.nii.gz", ct.image, ct.affine),
        write_nifti(tmp_path / "lab.nii.gz", labels, ct.affine),
        labels,
    )


# ------------------------------------------------------------------------------------------------ discovery, split
def test_discovers_totalsegmentator_subjects_and_their_held_out_split(ts_cohort):
    cases = discover_cases(ts_cohort)
    assert [c.patient for c in cases] == [f"Subject_{i:03d}" for i in range(1, 6)]
    assert all(Path(c.label).name == "segmentations" and Path(c.image).name == "ct.nii.gz" for c in cases)
    assert [c.split for c in cases] == [None, None, None, None, "test"]


def test_discovers_decathlon_training_and_labelled_test_cases(tmp_path):
    root = generate_cohort(tmp_path / "Task", n_cases=3, n_test=2, seed=1, shape=SHAPE, spacing=SPACING, progress=False)
    cases = discover_cases(root)
    assert [c.split for c in cases] == [None, None, None, "test", "test"]
    assert all(Path(c.image).is_absolute() and Path(c.label).is_file() for c in cases)


def test_json_datalist_keeps_patients_and_fixed_splits(tmp_path):
    entries = {
        "training": [
            {"image": "a1.nii.gz", "label": "l1.nii.gz", "patient": "A"},
            {"image": "a2.nii.gz", "label": "l2.nii.gz", "patient": "A"},
            {"image": "b.nii.gz", "label": "lb.nii.gz"},
        ],
        "test": [{"image": "c.nii.gz", "label": "lc.nii.gz"}],
    }
    (tmp_path / "list.json").write_text(json.dumps(entries))
    cases = discover_cases(tmp_path / "list.json")
    assert [c.patient for c in cases] == ["A", "A", "b", "c"]
    assert [c.case_id for c in cases] == ["A", "A_1", "b", "c"]
    assert cases[0].image == str(tmp_path / "a1.nii.gz")
    splits = split_by_patient(cases, val_fraction=0.5, seed=0)
    assert {c.patient for c in splits["test"]} == {"c"}
    a_splits = {c.split for c in cases if c.patient == "A"}
    assert len(a_splits) == 1, "the two cases of patient A were split apart"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_by_patient_never_shares_a_patient(seed):
    cases = [Case(patient=f"p{i % 7}", image=f"{i}.nii.gz", label=f"{i}l.nii.gz") for i in range(21)]
    splits = split_by_patient(cases, val_fraction=0.3, seed=seed)
    patients = {s: {c.patient for c in splits[s]} for s in splits}
    assert not patients["training"] & patients["validation"]
    assert len(patients["validation"]) == 2 and len(patients["training"]) == 5
    assert split_by_patient(cases, 0.3, seed)["validation"] == splits["validation"], "split not reproducible"


def test_split_refuses_one_patient_and_conflicting_fixed_splits():
    with pytest.raises(SliceError, match="at least 2 patients"):
        split_by_patient([Case("p", "a.nii.gz", "b.nii.gz")])
    with pytest.raises(SliceError, match="has cases in test and validation"):
        split_by_patient([Case("p", "a.nii.gz", "b.nii.gz", "test"), Case("p", "c.nii.gz", "d.nii.gz", "validation")])


@pytest.mark.parametrize(
    "source, message",
    [("missing", "no such file or folder"), ("empty_dir", "not a Decathlon folder"), ("notes.txt", "datalist .json")],
)
def test_bad_sources_get_one_line_errors(tmp_path, source, message):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SliceError, match=message) as err:
        discover_cases(tmp_path / source)
    assert str(tmp_path / source) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------------ preparation
def test_prepared_datalist_splits_by_patient_and_lists_volumes(prepared):
    data = _datalist(prepared)
    assert data["class_names"] == ["background", *CLASS_PRESETS["abdominal_organs"]]
    patients = data["patients"]
    assert patients["test"] == ["Subject_005"]
    assert len(patients["validation"]) == 1 and len(patients["training"]) == 3
    assert {s["patient"] for s in data["training"]} == set(patients["training"])
    for split in ("validation", "test"):
        assert [v["patient"] for v in data["volumes"][split]] == patients[split]
    assert all((prepared.parent / v["label"]).is_file() for s in data["volumes"].values() for v in s)
    # keep_empty=1: every slice of every training volume, each named by its index
    n = sum(v["n_slices"] for v in data["volumes"]["training"])
    assert len(data["training"]) == n == 3 * SHAPE[2]


def test_slices_hold_the_mapped_classes_bowel_is_the_union(prepared, ts_cohort):
    data = _datalist(prepared)
    item = max(data["training"], key=lambda s: len(s["classes"]))
    image = np.load(prepared.parent / item["image"])
    label = np.load(prepared.parent / item["label"])
    assert image.shape == label.shape == SHAPE[:2] and image.dtype == np.float32 and label.dtype == np.uint8
    assert 0.0 <= image.min() and image.max() <= 1.0
    masks = ts_cohort / item["patient"] / "segmentations"
    k = item["slice"]
    assert nib.aff2axcodes(nib.load(ts_cohort / item["patient"] / "ct.nii.gz").affine) == ("L", "P", "S")

    def mask(name):  # the generator stores LPS: the RAS slice is the stored one flipped in x and y
        path = masks / f"{name}.nii.gz"
        if not path.is_file():
            return np.zeros(SHAPE[:2], bool)
        return np.asarray(nib.load(path).dataobj)[::-1, ::-1, k] > 0

    bowel = mask("small_bowel") | mask("duodenum") | mask("colon")
    others = mask("spleen") | mask("kidney_left") | mask("kidney_right") | bowel
    np.testing.assert_array_equal(label == 5, bowel)  # the last class wins where masks overlap
    np.testing.assert_array_equal(label == 1, mask("liver") & ~others)
    assert sorted(item["classes"]) == sorted(int(c) for c in np.unique(label) if c)


@pytest.mark.parametrize("keep_empty, skip_first", [(0.0, 0), (0.0, 5), (1.0, 3)])
def test_slice_filters(ts_cohort, tmp_path, keep_empty, skip_first):
    data = _datalist(
        prepare_slices(ts_cohort, tmp_path, size=(32, 32), keep_empty=keep_empty, skip_first=skip_first, progress=False)
    )
    assert data["training"] and min(s["slice"] for s in data["training"]) >= skip_first
    if keep_empty == 0.0:
        assert all(s["classes"] for s in data["training"])
    else:
        assert len(data["training"]) == 3 * (SHAPE[2] - skip_first)
    assert np.load(tmp_path / data["training"][0]["image"]).shape == (32, 32)


@pytest.mark.parametrize("context", [1, 2])
def test_context_slices_stack_neighbours_clamped_at_the_volume_ends(ts_cohort, tmp_path, context):
    plain = _datalist(prepare_slices(ts_cohort, tmp_path / "plain", size=(32, 32), keep_empty=1.0, progress=False))
    data = _datalist(
        prepare_slices(ts_cohort, tmp_path / "ctx", size=(32, 32), keep_empty=1.0, context=context, progress=False)
    )
    assert data["settings"]["context"] == context and "context" not in plain["settings"]
    by_slice = {(s["patient"], s["slice"]): np.load(tmp_path / "plain" / s["image"]) for s in plain["training"]}
    n = SHAPE[2]
    for item in data["training"]:
        stack = np.load(tmp_path / "ctx" / item["image"])
        assert stack.shape == (2 * context + 1, 32, 32)
        for offset in range(-context, context + 1):
            neighbour = by_slice[item["patient"], min(max(item["slice"] + offset, 0), n - 1)]
            np.testing.assert_array_equal(stack[context + offset], neighbour)
    with pytest.raises(ValueError, match="context must be >= 0"):
        prepare_slices(ts_cohort, tmp_path / "bad", context=-1, progress=False)


@pytest.mark.parametrize(
    "normalize, hu, expected",
    [
        ("window", [-160, 40, 240, 1000], [0.0, 0.5, 1.0, 1.0]),
        ("lung", [-2000, -1000, 0, 3071], [-1000 / 3071, -1000 / 3071, 0.0, 1.0]),
    ],
)
def test_normalisations_map_known_hounsfield_units(tmp_path, normalize, hu, expected):
    image = np.zeros((8, 8, 8), np.int16)
    image[:4, :2, :] = np.array(hu, np.int16)[:, None, None]
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:5, 2:5, 2:5] = 1
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    case = Case(
        "p",
        str(write_nifti(tmp_path / "i.nii.gz", image, affine)),
        str(write_nifti(tmp_path / "l.nii.gz", label, affine)),
    )
    out, lab, _, _ = load_case(case, SliceSettings(classes={"x": [1]}, normalize=normalize, size=None))
    np.testing.assert_allclose(np.asarray(out[0, :4, 0, 0]), expected, atol=1e-6)
    assert int(lab.sum()) == 27


def test_zscore_normalisation_per_volume(tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.normal(300, 80, (16, 16, 8))).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[4:8, 4:8, 2:4] = 1
    case = Case(
        "p",
        str(write_nifti(tmp_path / "i.nii.gz", image, np.eye(4))),
        str(write_nifti(tmp_path / "l.nii.gz", label, np.eye(4))),
    )
    out = np.asarray(load_case(case, SliceSettings(classes="left_atrium", normalize="zscore", size=None))[0])
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-3


def test_rerun_reuses_cases_and_new_settings_rewrite_them(ts_cohort, tmp_path):
    first = _datalist(prepare_slices(ts_cohort, tmp_path, size=(24, 24), keep_empty=0.5, progress=False))
    some = tmp_path / first["training"][0]["image"]
    stamp = some.stat().st_mtime_ns
    again = _datalist(prepare_slices(ts_cohort, tmp_path, size=(24, 24), keep_empty=0.5, progress=False))
    assert again["training"] == first["training"] and some.stat().st_mtime_ns == stamp
    other = _datalist(prepare_slices(ts_cohort, tmp_path, size=(16, 16), keep_empty=0.5, progress=False))
    assert np.load(tmp_path / other["training"][0]["image"]).shape == (16, 16)
    assert not list(tmp_path.glob("slices/.*")), "temporary folders left behind"


# -------------------------------------------------------------------------------------------------------- reassembly
def test_reassemble_restores_the_label_in_the_input_geometry(tmp_path):
    image, label, native = _lps_case(tmp_path)
    case = Case("p", str(image), str(label))
    _, ras_label, mapped, _ = load_case(
        case, SliceSettings(classes={"liver": ["liver"], "spleen": ["spleen"]}, size=None)
    )
    assert nib.aff2axcodes(nib.load(image).affine) == ("L", "P", "S")
    slices = {k: ras_label[:, :, k] for k in range(ras_label.shape[2])}
    out = reassemble(slices, image, tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(np.asarray(out.dataobj), mapped)
    np.testing.assert_array_equal(mapped == 1, native == 5)
    written = nib.load(tmp_path / "out.nii.gz")
    assert written.shape == SHAPE
    np.testing.assert_allclose(written.affine, nib.load(image).affine, atol=1e-5)


def test_reassemble_resizes_slices_back_and_leaves_missing_slices_empty(tmp_path):
    image, label, _ = _lps_case(tmp_path)
    settings = SliceSettings(classes={"liver": ["liver"]}, size=(96, 96))
    _, ras_label, mapped, _ = load_case(Case("p", str(image), str(label)), settings)
    assert ras_label.shape == (96, 96, SHAPE[2])
    out = np.asarray(reassemble({k: ras_label[:, :, k] for k in range(2, SHAPE[2])}, image).dataobj)
    assert out.shape == SHAPE and not out[:, :, :2].any()
    overlap = (out[:, :, 2:] == 1) & (mapped[:, :, 2:] == 1)
    dice = 2 * overlap.sum() / ((out[:, :, 2:] == 1).sum() + (mapped[:, :, 2:] == 1).sum())
    assert dice > 0.95, dice


def test_reassemble_rejects_slices_that_do_not_fit(tmp_path):
    image, _, _ = _lps_case(tmp_path)
    with pytest.raises(SliceError, match="outside the volume"):
        reassemble({SHAPE[2]: np.zeros((8, 8))}, image)
    with pytest.raises(SliceError, match="expected 16 slices"):
        reassemble(np.zeros((3, 8, 8)), image)


# ------------------------------------------------------------------------------------------------------- bad input
def test_mismatched_image_and_label_are_refused_naming_the_label(tmp_path):
    image, _, native = _lps_case(tmp_path)
    short = write_nifti(tmp_path / "short.nii.gz", native[:, :, :-2], nib.load(image).affine)
    with pytest.raises(SliceError, match="does not match image shape") as err:
        load_case(Case("p", str(image), str(short)), SliceSettings(classes={"liver": ["liver"]}))
    assert str(short) in str(err.value)
    moved = nib.load(image).affine.copy()
    moved[0, 3] += 30
    shifted = write_nifti(tmp_path / "shifted.nii.gz", native, moved)
    with pytest.raises(SliceError, match="affine"):
        load_case(Case("p", str(image), str(shifted)), SliceSettings(classes={"liver": ["liver"]}))


def test_empty_labels_and_corrupt_files_are_refused(tmp_path):
    image, label, native = _lps_case(tmp_path)
    with pytest.raises(SliceError, match="empty label"):
        load_case(Case("p", str(image), str(label)), SliceSettings(classes={"kidney": ["kidney_left"]}))
    load_case(Case("p", str(image), str(label)), SliceSettings(classes={"kidney": ["kidney_left"]}), allow_empty=True)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(Path(image).read_bytes()[:2000])
    with pytest.raises(SliceError, match="truncated.nii.gz: unreadable volume"):
        load_case(Case("p", str(truncated), str(label)), SliceSettings(classes={"liver": ["liver"]}))
    with pytest.raises(SliceError, match="not a TotalSegmentator"):
        load_case(Case("p", str(image), str(label)), SliceSettings(classes={"x": ["no_such_organ"]}))


def test_a_failing_case_leaves_no_half_written_slices(ts_cohort, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ct.nii.gz").write_bytes((ts_cohort / "Subject_001" / "ct.nii.gz").read_bytes()[:5000])
    (bad / "segmentations").mkdir()
    (bad / "segmentations" / "liver.nii.gz").write_bytes(
        (ts_cohort / "Subject_001" / "segmentations" / "liver.nii.gz").read_bytes()
    )
    for name in ("Subject_001", "Subject_002"):
        (tmp_path / name).symlink_to(ts_cohort / name)
    out = tmp_path / "out"
    with pytest.raises(SliceError, match="bad/ct.nii.gz"):
        prepare_slices(tmp_path, out, progress=False)
    assert not (out / "datalist.json").exists()
    assert not list((out / "slices").glob(".*")) if (out / "slices").exists() else True


def test_dicom_series_source_gives_the_nifti_slices(tmp_path):
    ct = generate_abdominal_ct(6, shape=SHAPE, spacing=SPACING)
    labels = np.where(ct.mask("liver"), 5, 0).astype(np.uint8)
    write_dicom_series(tmp_path / "series", ct.image, ct.affine)
    write_nifti(tmp_path / "ct.nii.gz", ct.image, ct.affine)
    write_nifti(tmp_path / "lab.nii.gz", labels, ct.affine)
    settings = SliceSettings(classes={"liver": ["liver"]}, size=(32, 32))
    from_dicom = load_case(Case("p", str(tmp_path / "series"), str(tmp_path / "lab.nii.gz")), settings)
    from_nifti = load_case(Case("p", str(tmp_path / "ct.nii.gz"), str(tmp_path / "lab.nii.gz")), settings)
    np.testing.assert_allclose(np.asarray(from_dicom[0]), np.asarray(from_nifti[0]), atol=1e-5)
    np.testing.assert_array_equal(from_dicom[1], from_nifti[1])


# ------------------------------------------------------------------------------------------------------- real scans
@pytest.mark.real
def test_real_totalsegmentator_multilabel_file_maps_by_name(real_dir):
    ref = real_dir / "totalsegmentator" / "reference_files"
    case = Case("example", str(ref / "example_ct.nii.gz"), str(ref / "example_seg_fast_force_split.nii.gz"))
    _, label, mapped, _ = load_case(case, SliceSettings(classes="abdominal_organs", size=None))
    # voxel counts of SOURCES.md: liver 41692, spleen 9668, kidneys 5090 / 7134, bowel 19717 + 2319 + 59968
    assert np.bincount(mapped.ravel(), minlength=6).tolist()[1:] == [41692, 9668, 5090, 7134, 19717 + 2319 + 59968]
    assert label.shape == (122, 101, 112)


@pytest.mark.real
def test_real_dicom_series_and_its_las_label_align_in_ras(real_dir):
    """The label is stored LAS and ITK reads the series LPS: compared in RAS, the liver is where liver HU are."""
    ref = real_dir / "totalsegmentator" / "reference_files"
    case = Case("dicom", str(ref / "example_ct_dicom"), str(ref / "example_seg_dicom.nii.gz"))
    image, label, mapped, _ = load_case(case, SliceSettings(classes="abdominal_organs", normalize="none", size=None))
    hu = np.asarray(image[0])
    assert int((label == 1).sum()) == 366708 and int((label == 2).sum()) == 130634
    assert 60 < np.median(hu[label == 1]) < 130, "liver label does not sit on the portal-venous liver"
    assert np.median(hu[label == 0]) < 0
    flipped = label[:, ::-1]
    assert not 60 < np.median(hu[flipped == 1]) < 130 or np.mean(flipped == label) < 0.95


def test_totalsegmentator_folder_with_organs_missing_maps_the_others_and_says_which(ts_cohort, tmp_path, caplog):
    """A subject whose spleen mask file is gone: the spleen is absent from the label, the other organs are kept,
    and the log names the missing file; without any of the requested organs the case is refused."""
    import logging

    subject = tmp_path / "Subject_001"
    shutil.copytree(ts_cohort / "Subject_001", subject)
    settings = SliceSettings(classes=CLASS_PRESETS["abdominal_organs"], size=None)
    case = Case("Subject_001", str(subject / "ct.nii.gz"), str(subject / "segmentations"))
    _, _, full, _ = load_case(case, settings)
    (subject / "segmentations" / "spleen.nii.gz").unlink()
    with caplog.at_level(logging.WARNING, logger="monai_apps.data.slices"):
        _, _, partial, _ = load_case(case, settings)
    spleen = list(CLASS_PRESETS["abdominal_organs"]).index("spleen") + 1
    assert (full == spleen).any() and not (partial == spleen).any()
    np.testing.assert_array_equal(partial[full != spleen], full[full != spleen])
    assert "spleen.nii.gz" in caplog.text and "absent" in caplog.text
    with pytest.raises(SliceError, match="empty label"):
        load_case(case, SliceSettings(classes={"spleen": ["spleen"]}, size=None))
