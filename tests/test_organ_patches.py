"""Organ-patch preparation: TotalSegmentator reading and combining, vectorised patch selection, splits, balancing."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_apps.data.organ_patches import (
    ORGAN_CLASSES,
    TS_TOTAL,
    OrganPatchError,
    balance_patches,
    count_windows,
    extract_patches,
    find_subjects,
    prepare_organ_patches,
    read_subject,
    to_display,
    window_to_uint8,
)
from monai_apps.data.writers import write_nifti

IDS = {name: i for i, name in TS_TOTAL.items()}
CLASSES = list(ORGAN_CLASSES)


def _brute_force(mask: np.ndarray, patch: int, stride: int) -> np.ndarray:
    X, Y, Z = mask.shape
    return np.array(
        [
            [[mask[x : x + patch, y : y + patch, z].sum() for z in range(Z)] for y in range(0, Y - patch + 1, stride)]
            for x in range(0, X - patch + 1, stride)
        ]
    ).reshape(len(range(0, X - patch + 1, stride)), len(range(0, Y - patch + 1, stride)), Z)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize(("patch", "stride"), [(8, 4), (8, 3), (6, 6), (5, 2), (7, 1)])
def test_count_windows_matches_brute_force(patch, stride, order):
    rng = np.random.default_rng(patch * 10 + stride)
    mask = np.asarray(rng.random((23, 19, 3)) > 0.4, order=order)
    np.testing.assert_array_equal(count_windows(mask, patch, stride), _brute_force(mask, patch, stride))


def test_count_windows_smaller_than_patch_is_empty():
    assert count_windows(np.ones((5, 40, 2), bool), 8, 4).shape == (0, 0, 2)


def test_window_to_uint8_maps_level_and_width():
    hu = np.array([-1000, -160, 40, 240, 3000])
    np.testing.assert_array_equal(window_to_uint8(hu, 40, 400), [0, 0, 128, 255, 255])
    np.testing.assert_array_equal(window_to_uint8(np.array([-100, 0, 100]), 0, 200), [0, 128, 255])


def test_to_display_puts_anterior_up_and_patient_right_on_the_left():
    ras = np.zeros((4, 4), np.uint8)
    ras[3, 3] = 1  # largest x (patient's right in RAS) and largest y (anterior)
    ras[0, 3] = 2  # patient's left, anterior
    display = to_display(ras)
    assert display[0, 0] == 1 and display[0, 3] == 2


def _slab_volume(shape=(96, 80, 4)) -> tuple[np.ndarray, np.ndarray]:
    """Liver block of 40x40 with a 2-pixel stripe of spleen; a kidney block; everything else unlabelled."""
    hu = np.full(shape, -100, np.int16)
    labels = np.zeros(shape, np.uint8)
    labels[8:48, 8:48] = IDS["liver"]
    hu[8:48, 8:48] = 100
    labels[8:48, 46:48] = IDS["spleen"]  # 2 of 40 columns: 95 % liver where a window covers them
    labels[56:88, 40:72] = IDS["kidney_left"]
    hu[56:88, 40:72] = 170
    return hu, labels


def test_extract_patches_keeps_pure_filled_windows_only():
    hu, labels = _slab_volume()
    p = extract_patches(hu, labels, patch_size=16, stride=8, purity=0.95, min_fill=0.9)
    assert len(p) > 0 and p.images.shape[1:] == (16, 16) and p.images.dtype == np.uint8
    names = [CLASSES[k] for k in p.classes]
    assert set(names) == {"liver", "kidney"}
    for (x, y, z), cls, pur, fill in zip(p.positions, names, p.purity, p.fill, strict=True):
        window = labels[x : x + 16, y : y + 16, z]
        lab = window[window > 0]
        share = np.isin(lab, [IDS[n] for n in ORGAN_CLASSES[cls]]).mean()
        assert share > 0.95 and np.isclose(pur, share)
        assert fill >= 0.9 and np.isclose(fill, lab.size / 256)
    # a window holding liver and the spleen stripe (32 of 256 labelled pixels are spleen) is not pure enough
    assert not any((x == 32 and y == 32) for x, y, _ in p.positions)
    # the patch pixels are the windowed CT of that position, in display orientation
    x, y, z = p.positions[0]
    np.testing.assert_array_equal(p.images[0], to_display(window_to_uint8(hu[x : x + 16, y : y + 16, z])))


def test_extract_patches_thresholds_and_slice_step():
    hu, labels = _slab_volume()
    strict = extract_patches(hu, labels, patch_size=16, stride=8, purity=1.0, min_fill=1.0)
    loose = extract_patches(hu, labels, patch_size=16, stride=8, purity=0.5, min_fill=0.5)
    assert 0 < len(strict) < len(loose)
    assert (strict.purity == 1.0).all() and (strict.fill == 1.0).all()
    every_other = extract_patches(hu, labels, patch_size=16, stride=8, slice_step=2)
    assert set(every_other.positions[:, 2]) == {0, 2}
    with pytest.raises(ValueError, match="purity"):
        extract_patches(hu, labels, purity=1.5)
    with pytest.raises(OrganPatchError, match="shape"):
        extract_patches(hu, labels[:, :, :2])


# ---------------------------------------------------------------------------------------------------------------
# subjects on disk
# ---------------------------------------------------------------------------------------------------------------
def _write_subject(folder: Path, hu: np.ndarray, labels: np.ndarray, affine: np.ndarray, skip=()) -> Path:
    for i in np.unique(labels):
        if i and TS_TOTAL[int(i)] not in skip:
            write_nifti(folder / "segmentations" / f"{TS_TOTAL[int(i)]}.nii.gz", (labels == i).astype(np.uint8), affine)
    write_nifti(folder / "ct.nii.gz", hu, affine)
    return folder


AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])


def test_read_subject_combines_masks_caches_combined_and_reorients(tmp_path):
    hu, labels = _slab_volume()
    ras = _write_subject(tmp_path / "ras" / "S1", hu, labels, AFFINE)
    lps_affine = AFFINE.copy()
    lps_affine[:2, :2] *= -1
    lps_affine[:2, 3] = [(hu.shape[0] - 1) * 0.8, (hu.shape[1] - 1) * 0.8]  # same world positions, flipped axes
    lps = _write_subject(tmp_path / "lps" / "S1", hu[::-1, ::-1], labels[::-1, ::-1], lps_affine)
    a, b = read_subject(ras), read_subject(lps)
    assert a.source == b.source == "masks"
    np.testing.assert_array_equal(a.hu, b.hu)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.labels, labels)
    assert a.spacing == pytest.approx((0.8, 0.8, 3.0))
    assert sorted(a.present) == ["kidney_left", "liver", "spleen"]
    # combined.nii.gz is written with TotalSegmentator's label map header and reused next time
    from totalsegmentator.nifti_ext_header import load_multilabel_nifti

    img, label_map = load_multilabel_nifti(ras / "combined.nii.gz")
    assert label_map[5] == "liver" and label_map[3] == "kidney_left"
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels)
    again = read_subject(ras)
    assert again.source == "combined"
    np.testing.assert_array_equal(again.labels, labels)


def test_read_subject_remaps_a_combined_file_by_its_header(tmp_path):
    from totalsegmentator.nifti_ext_header import add_label_map_to_nifti

    hu, labels = _slab_volume()
    own = np.zeros_like(labels)
    own[labels == IDS["liver"]] = 1
    own[labels == IDS["kidney_left"]] = 2
    folder = tmp_path / "S1"
    write_nifti(folder / "ct.nii.gz", hu, AFFINE)
    img = add_label_map_to_nifti(nib.Nifti1Image(own, AFFINE), {1: "liver", 2: "kidney_left"})
    nib.save(img, folder / "combined.nii.gz")
    subject = read_subject(folder)
    assert subject.source == "combined"
    assert set(np.unique(subject.labels)) == {0, IDS["liver"], IDS["kidney_left"]}


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("truncated_ct", "ct.nii.gz: unreadable CT"),
        ("no_ct", "no subject folders"),
        ("mask_shape", "liver.nii.gz: shape"),
        ("no_labels", "no segmentations"),
        ("combined_float", "not a label map"),
    ],
)
def test_bad_subjects_fail_with_one_line_naming_the_file(tmp_path, breakage, message):
    hu, labels = _slab_volume()
    folder = _write_subject(tmp_path / "in" / "S1", hu, labels, AFFINE)
    if breakage == "truncated_ct":
        data = (folder / "ct.nii.gz").read_bytes()
        (folder / "ct.nii.gz").write_bytes(data[: len(data) // 2])
    elif breakage == "no_ct":
        (folder / "ct.nii.gz").unlink()
    elif breakage == "mask_shape":
        write_nifti(folder / "segmentations" / "liver.nii.gz", np.ones((10, 10, 4), np.uint8), AFFINE)
    elif breakage == "no_labels":
        for f in (folder / "segmentations").iterdir():
            f.unlink()
    elif breakage == "combined_float":
        write_nifti(folder / "combined.nii.gz", labels.astype(np.float32) + 0.5, AFFINE)
    with pytest.raises(OrganPatchError, match=message) as err:
        prepare_organ_patches(
            tmp_path / "in",
            tmp_path / "out",
            patch_size=16,
            stride=8,
            val_fraction=0,
            test_fraction=0,
            balance=None,
            progress=False,
        )
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists(), "a failed preparation left output behind"


def test_missing_input_folder_and_busy_output(tmp_path):
    with pytest.raises(OrganPatchError, match="input folder not found"):
        find_subjects(tmp_path / "nowhere")
    hu, labels = _slab_volume()
    _write_subject(tmp_path / "in" / "S1", hu, labels, AFFINE)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(OrganPatchError, match="not empty"):
        prepare_organ_patches(tmp_path / "in", tmp_path / "out", val_fraction=0, test_fraction=0, progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(OrganPatchError, match="unknown class 'pancreatic_duct'"):
        prepare_organ_patches(tmp_path / "in", tmp_path / "o2", classes=["liver", "pancreatic_duct"], progress=False)


# ---------------------------------------------------------------------------------------------------------------
# whole preparation on a generated cohort
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from monai_apps.data.cohort import generate_cohort

    root = tmp_path_factory.mktemp("ts")
    generate_cohort(
        root,
        n_cases=4,
        seed=3,
        layout="totalsegmentator",
        shape=(160, 160, 8),
        spacing=(2.0, 2.0, 25.0),
        progress=False,
    )
    # the last subject has no kidney masks: it must still contribute its other organs
    for f in (root / "Subject_004" / "segmentations").glob("kidney_*.nii.gz"):
        f.unlink()
    return root


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prep") / "patches"
    summary = prepare_organ_patches(
        cohort,
        out,
        patch_size=24,
        stride=6,
        purity=0.95,
        min_fill=0.9,
        val_fraction=0.25,
        test_fraction=0.25,
        balance=20,
        seed=1,
        progress=False,
    )
    return out, summary


def test_prepare_splits_by_subject_and_writes_manifest(prepared, cohort):
    out, summary = prepared
    assert sorted(summary["subjects"].values()) == ["test", "train", "train", "val"]
    with open(out / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["n_patches"] > 0
    split_of_subject = {}
    for row in rows:
        assert split_of_subject.setdefault(row["subject"], row["split"]) == row["split"], "a subject in two splits"
        assert (out / row["file"]).is_file()
        assert float(row["purity"]) > 0.95 and float(row["fill"]) >= 0.9
    assert set(split_of_subject) <= set(summary["subjects"])
    assert summary["missing_classes"].get("Subject_004") == ["kidney"]
    assert json.loads((out / "summary.json").read_text())["n_patches"] == summary["n_patches"]
    # a written PNG is the windowed CT at its manifest position (display orientation)
    row = rows[len(rows) // 2]
    subject = read_subject(cohort / row["subject"])
    x, y, z = int(row["x0"]), int(row["y0"]), int(row["z"])
    expected = to_display(window_to_uint8(subject.hu[x : x + 24, y : y + 24, z]))
    np.testing.assert_array_equal(np.asarray(Image.open(out / row["file"])), expected)
    # ... and its class is the organ there
    window = subject.labels[x : x + 24, y : y + 24, z]
    assert np.isin(window[window > 0], [IDS[n] for n in ORGAN_CLASSES[row["class"]]]).mean() > 0.95


def test_prepare_balances_train_and_only_undersamples_heldout(prepared):
    out, summary = prepared
    for cls in CLASSES:
        n_train = summary["extracted"]["train"][cls]
        files = list((out / "train" / cls).glob("*.png"))
        assert len(files) == (20 if n_train else 0), (cls, n_train, len(files))
        augmented = [f for f in files if f.name.startswith("aug")]
        assert len(augmented) == max(0, 20 - n_train) if n_train else not augmented
        for split in ("val", "test"):
            held = list((out / split / cls).glob("*.png")) if (out / split / cls).is_dir() else []
            assert len(held) == min(20, summary["extracted"][split][cls])
            assert not any(f.name.startswith("aug") for f in held)


def test_balance_patches_undersamples_and_augments(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("big", 30), ("small", 3)):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (32, 32), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / "src" / cls / f"{i:03d}.png")
    report = balance_patches(tmp_path / "src", tmp_path / "dst", target=10, seed=4)
    assert report == {
        "big": {"source": 30, "kept": 10, "augmented": 0},
        "small": {"source": 3, "kept": 3, "augmented": 7},
    }
    small = sorted((tmp_path / "dst" / "small").glob("*.png"))
    assert len(small) == 10 and len(list((tmp_path / "dst" / "big").glob("*.png"))) == 10
    originals = {f.name: np.asarray(Image.open(f)) for f in (tmp_path / "src" / "small").glob("*.png")}
    for f in small:
        if f.name.startswith("aug"):
            new = np.asarray(Image.open(f))
            source = originals[f.name.split("_", 1)[1]]
            assert new.shape == source.shape and not np.array_equal(new, source)
    again = balance_patches(tmp_path / "src", tmp_path / "dst2", target=10, seed=4)
    assert again == report
    for f in small:
        np.testing.assert_array_equal(
            np.asarray(Image.open(f)), np.asarray(Image.open(tmp_path / "dst2" / "small" / f.name))
        )
    with pytest.raises(OrganPatchError, match="patch folder not found"):
        balance_patches(tmp_path / "missing", tmp_path / "dst3")


@pytest.mark.real
def test_real_totalsegmentator_output_gives_liver_patches(real_dir, tmp_path):
    """TotalSegmentator's own multi-label output (with its label-map header) on its example CT, resampled to 1 mm."""
    ref = real_dir / "totalsegmentator" / "reference_files"
    subject = tmp_path / "example"
    subject.mkdir()
    (subject / "ct.nii.gz").symlink_to(ref / "example_ct.nii.gz")
    (subject / "combined.nii.gz").symlink_to(ref / "example_seg_fast_force_split.nii.gz")
    s = read_subject(subject, spacing=1.0)
    assert s.source == "combined" and s.hu.shape == (366, 303, 112) and s.spacing == pytest.approx((1.0, 1.0, 3.0))
    assert {"liver", "spleen", "kidney_left", "aorta"} <= set(s.present)
    p = extract_patches(s.hu, s.labels)
    liver = p.images[p.classes == CLASSES.index("liver")]
    assert len(liver) > 100
    # non-contrast liver (about 47 HU) sits near the middle of the 40/400 window: (47 + 160) / 400 * 255 = 132
    assert 115 < liver.mean() < 150
    assert (p.purity > 0.95).all()


def test_gzip_trailer_damage_is_caught(tmp_path):
    """A .nii.gz whose gzip stream is cut inside the data fails on reading, naming the file."""
    hu, labels = _slab_volume()
    folder = _write_subject(tmp_path / "S1", hu, labels, AFFINE)
    raw = gzip.decompress((folder / "segmentations" / "liver.nii.gz").read_bytes())
    (folder / "segmentations" / "liver.nii.gz").write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(OrganPatchError, match="liver.nii.gz: unreadable mask"):
        read_subject(folder)
