"""The Gradio demo through ``gradio_client`` (every tab, its example, bad uploads, the limits), in a browser
(Playwright driving Debian's Chromium, installed by the test through apt-get), and its display geometry.

``npx playwright install`` cannot download browsers here, so the system Chromium is launched by path; without it
and without apt-get (as root) to install it, the browser test is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_apps.demo.display import axial, display_stack, display_to_voxel, label_volumes_ml, load_ras
from monai_apps.demo.inputs import DemoInputError, sniff, unzip_dicom_series


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    """A private example cache (generated examples, untrained weights) for this module."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("demo_cache")
    mp.setenv("MONAI_APPS_DEMO_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="module")
def server(demo_cache):
    """The demo with every ready tab, on a free local port; stopped after the module."""
    from monai_apps.demo import launch

    demo = launch(port=free_port(), block=False)
    yield demo
    demo.close()


@pytest.fixture()
def client(server):
    from gradio_client import Client

    return Client(server.local_url, verbose=False)


def _endpoints(client) -> set[str]:
    return set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])


def _png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_listens_on_localhost_with_a_tab_per_ready_bundle(server, client):
    assert server.server_name == "127.0.0.1" and server.local_url.startswith("http://127.0.0.1:")
    ready = set(server.demo_app.models)
    assert {"liver"} <= ready, "the finished liver bundle must have its tab"
    expected = {
        "liver": {"/liver_segment", "/liver_slice", "/liver_example"},
        "organs": {"/organs_segment", "/organs_slice", "/organs_example"},
        "patch": {"/patch_load", "/patch_slice", "/patch_classify", "/patch_example"},
        "brain": {"/brain_classify", "/brain_example"},
        "cxr": {"/cxr_classify", "/cxr_example"},
    }
    names = _endpoints(client)
    for key, endpoints in expected.items():
        assert (endpoints <= names) == (key in ready), key


def test_liver_tab_nifti_upload_slider_and_volumes(server, client, demo_cache):
    from gradio_client import handle_file

    from monai_apps.demo import examples

    source = examples.abdomen_ct()
    slider, image, volumes = client.predict(handle_file(str(source)), api_name="/liver_segment")
    shape = nib.load(source).shape
    assert slider["minimum"] == 0 and slider["maximum"] == shape[2] - 1
    first = _png(image)
    assert first.shape == (shape[1], shape[0], 3)
    assert set(volumes) == {"liver (with tumours) mL", "liver parenchyma mL", "liver tumour mL"}
    assert volumes["liver (with tumours) mL"] == pytest.approx(
        volumes["liver parenchyma mL"] + volumes["liver tumour mL"], abs=0.15
    )
    other = _png(client.predict(0 if slider["value"] else 1, api_name="/liver_slice"))
    assert other.shape == first.shape and not np.array_equal(other, first), "the slider shows another slice"
    # the same scan as a zipped DICOM series gives the same volumes (same voxels, same geometry)
    _, _, from_dicom = client.predict(handle_file(str(examples.abdomen_dicom_zip())), api_name="/liver_segment")
    for name, value in volumes.items():
        assert from_dicom[name] == pytest.approx(value, rel=0.01, abs=0.5), name


def _write_bad(kind: str, folder: Path) -> tuple[Path, str]:
    """A bad upload of ``kind`` and the message the page must show."""
    from monai_apps.data.writers import write_dicom_series
    from monai_apps.demo import examples

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "text":
        path = folder / "notes.nii.gz"
        path.write_text("not an image")
        return path, "notes.nii.gz: an unrecognised or corrupt file"
    if kind == "truncated_nifti":
        data = examples.abdomen_ct().read_bytes()
        path = folder / "cut.nii.gz"
        path.write_bytes(data[: len(data) // 2])
        return path, "cut.nii.gz: truncated or corrupt NIfTI file"
    series = []
    if kind in ("mr_zip", "two_series_zip"):
        series.append(write_dicom_series(folder / "a", np.zeros((8, 8, 3)), np.eye(4), modality="MR"))
        if kind == "two_series_zip":
            series.append(write_dicom_series(folder / "b", np.zeros((8, 8, 3)), np.eye(4)))
    path = folder / f"{kind}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for s in series:
            for f in sorted(s.iterdir()):
                zf.write(f, arcname=f"{s.name}/{f.name}")
        if kind == "bomb_zip":
            zf.writestr("big.dcm", b"\0" * (8 * 1024**2))
        if kind == "link_zip":
            info = zipfile.ZipInfo("../../etc/passwd")
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    expected = {
        "mr_zip": "mr_zip.zip: DICOM modality MR is not CT",
        "two_series_zip": "two_series_zip.zip: holds 2 DICOM series; zip one series",
        "bomb_zip": "bomb_zip.zip: member big.dcm is compressed",
        "link_zip": "link_zip.zip: holds a symbolic link",
    }[kind]
    return path, expected


@pytest.mark.parametrize("kind", ["text", "truncated_nifti", "mr_zip", "two_series_zip", "bomb_zip", "link_zip"])
def test_bad_upload_gives_a_message_and_the_server_keeps_serving(kind, server, client, tmp_path):
    from gradio_client import handle_file

    path, expected = _write_bad(kind, tmp_path)
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(path)), api_name="/liver_segment")
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)
    # still serving: a cheap request on the same tab succeeds
    assert client.predict(0, api_name="/liver_slice") is None  # no scan loaded in this session: no image
    assert "/liver_segment" in _endpoints(client)


def test_organs_tab_example(server, client):
    if "organs" not in server.demo_app.models:
        pytest.skip("abdominal_organs_ct_2d_segmentation is not ready")
    slider, image, volumes = client.predict(api_name="/organs_example")
    assert set(volumes) == {"liver mL", "spleen mL", "kidney_left mL", "kidney_right mL", "bowel mL"}
    assert _png(image).ndim == 3 and slider["maximum"] > 0


def test_patch_tab_example_and_click(server, client):
    if "patch" not in server.demo_app.models:
        pytest.skip("organ_patch_ct_classification is not ready")
    slider, row, col, patch, probs, image, where = client.predict(api_name="/patch_example")
    classes = {c["label"]: c["confidence"] for c in probs["confidences"]}
    assert set(classes) == set(server.demo_app.models["patch"].model.output_channels().values())
    assert sum(classes.values()) == pytest.approx(1.0, abs=1e-4)
    assert _png(patch).shape[:2] == (256, 256), "the 64 x 64 patch, shown 4x"
    rows, cols = _png(image).shape[:2]
    assert 0 <= row < rows and 0 <= col < cols
    # a click through the API on the same session, one pixel away
    patch2, probs2, image2, where2 = client.predict(slider["value"], row + 1, col, api_name="/patch_classify")
    assert where2["voxel_ras"] == [where["voxel_ras"][0], where["voxel_ras"][1] - 1, where["voxel_ras"][2]]
    with pytest.raises(Exception, match="outside the"):
        client.predict(slider["value"], 10_000, 5, api_name="/patch_classify")


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_patch_tab_single_dicom_slice(modality, server, client, tmp_path):
    """One DICOM CT slice loads as a one-slice volume and a click classifies its patch; an MR slice is refused."""
    if "patch" not in server.demo_app.models:
        pytest.skip("organ_patch_ct_classification is not ready")
    from gradio_client import handle_file

    from monai_apps.data.synthetic_abdomen import generate_abdominal_ct
    from monai_apps.data.writers import write_dicom_series

    ct = generate_abdominal_ct(seed=5, shape=(96, 80, 4), spacing=(4.0, 4.0, 8.0), n_tumours=0)
    series = write_dicom_series(tmp_path / "s", ct.image, ct.affine, modality=modality)
    one = sorted(series.iterdir())[2]
    if modality == "MR":
        with pytest.raises(Exception, match=f"{one.name}: DICOM modality MR is not CT"):
            client.predict(handle_file(str(one)), api_name="/patch_load")
        return
    slider, image = client.predict(handle_file(str(one)), api_name="/patch_load")
    assert slider["value"] == 0 and not slider["interactive"], "one slice: the slider stays put"
    assert _png(image).shape[:2] == (80, 96), "one slice, shown rows x columns"
    patch, probs, _, where = client.predict(0, 40, 30, api_name="/patch_classify")
    assert _png(patch).shape[:2] == (256, 256)
    assert sum(c["confidence"] for c in probs["confidences"]) == pytest.approx(1.0, abs=1e-4)
    assert where["voxel_ras"] == [96 - 1 - 30, 80 - 1 - 40, 0]


def test_brain_tab_example(server, client):
    if "brain" not in server.demo_app.models:
        pytest.skip("brain_metastasis_ct_classification is not ready")
    label, plot, image, summary = client.predict(api_name="/brain_example")
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences["metastasis"] == pytest.approx(summary["patient probability"], abs=1e-4)
    assert summary["slices analysed"] > 0 and _png(image).ndim == 3
    assert plot is not None


def test_cxr_tab_png_upload(server, client, tmp_path):
    if "cxr" not in server.demo_app.models:
        pytest.skip("pneumonia_cxr_classification is not ready")
    from gradio_client import handle_file
    from PIL import Image

    from monai_apps.data.synthetic_cxr import generate_cxr

    cxr = generate_cxr(seed=3, pneumonia=False, size=256)
    path = tmp_path / "chest.png"
    Image.fromarray((cxr.image * 255).astype(np.uint8)).save(path)
    label, cam = client.predict(handle_file(str(path)), api_name="/cxr_classify")
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == {"normal", "pneumonia"} and sum(confidences.values()) == pytest.approx(1, abs=1e-4)
    assert _png(cam).ndim == 3
    label, cam = client.predict(api_name="/cxr_example")
    assert label["label"] in ("normal", "pneumonia")


def test_upload_size_is_limited(demo_cache, tmp_path):
    from gradio_client import Client, handle_file

    from monai_apps.demo import launch

    demo = launch(port=free_port(), block=False, tabs=["liver"], max_file_size="20kb")
    try:
        path = tmp_path / "big.nii.gz"
        path.write_bytes(b"\x1f\x8b" + b"\0" * 100_000)
        with pytest.raises(Exception, match="(?i)exceed|too large|size"):
            Client(demo.local_url, verbose=False).predict(handle_file(str(path)), api_name="/liver_segment")
    finally:
        demo.close()


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _ensure_chromium() -> None:
    if CHROMIUM.is_file():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("Debian's chromium is not installed and apt-get (as root) is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:  # stale package lists: update once and retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0 or not CHROMIUM.is_file():
        pytest.skip(f"could not install chromium with apt-get: {proc.stderr.strip()[-300:]}")


def test_browser_upload_move_slider_and_see_the_overlay(server, tmp_path):
    """Playwright drives Debian's Chromium: upload a NIfTI, segment, move the slider, the overlay changes."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    _ensure_chromium()
    from monai_apps.demo import examples

    source = examples.abdomen_ct()
    with sync_api.sync_playwright() as p:
        # a fresh profile folder: Playwright passes it to Chromium as --user-data-dir
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=FLAGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(server.local_url, wait_until="domcontentloaded")
            page.locator("#liver_upload").wait_for(timeout=60_000)
            page.locator("#liver_upload input[type=file]").set_input_files(str(source))
            # the uploaded file is listed (Gradio may split the name into stem and extension spans)
            upload = page.locator("#liver_upload")
            upload.locator(f'[aria-label="{source.name}"]').or_(upload.get_by_text(source.name)).first.wait_for(
                timeout=60_000
            )
            page.locator("#liver_run").click()
            overlay = page.locator("#liver_overlay img")
            overlay.wait_for(state="visible", timeout=120_000)
            first = overlay.get_attribute("src")
            assert first, "the overlay image has no source"
            volumes = page.locator("#liver_volumes")
            volumes.get_by_text("liver tumour mL").wait_for(timeout=30_000)
            # move the slider with the keyboard, as a user would; the overlay changes to another slice
            handle = page.locator("#liver_slider input[type=range]")
            before = int(handle.input_value())
            handle.focus()
            for _ in range(5):
                page.keyboard.press("ArrowLeft" if before >= 5 else "ArrowRight")
            page.wait_for_function(
                "(first) => { const img = document.querySelector('#liver_overlay img');"
                " return img && img.src && img.src !== first; }",
                arg=first,
                timeout=60_000,
            )
            assert int(handle.input_value()) != before
            shot = page.locator("#liver_overlay").screenshot()
            assert len(shot) > 1000
        finally:
            browser.close()


# ----- display geometry and upload parsing, without a server -----------------------------------------------


@pytest.mark.parametrize("flip", [False, True])
def test_display_shows_the_liver_on_the_viewers_left_and_the_spine_at_the_bottom(flip, tmp_path):
    """Radiological convention whatever the storage order: patient's right on the left, anterior at the top."""
    from monai_apps.data.synthetic_abdomen import STRUCTURE_IDS, generate_abdominal_ct
    from monai_apps.data.writers import write_nifti

    ct = generate_abdominal_ct(seed=5, shape=(64, 56, 16), spacing=(6.0, 6.0, 12.0), n_tumours=0)
    labels, affine = ct.labels, ct.affine
    if flip:  # stored LPS-like: first two axes reversed
        f = np.diag([-1.0, -1.0, 1.0, 1.0])
        f[0, 3], f[1, 3] = labels.shape[0] - 1, labels.shape[1] - 1
        labels, affine = labels[::-1, ::-1], affine @ f
    write_nifti(tmp_path / "labels.nii.gz", np.ascontiguousarray(labels), affine)
    ras, ras_affine = load_ras(tmp_path / "labels.nii.gz")
    stack = display_stack(ras)
    liver = np.argwhere(np.isin(stack, [STRUCTURE_IDS["liver"], STRUCTURE_IDS["liver_tumor"]]))
    spine = np.argwhere(np.isin(stack, [STRUCTURE_IDS[n] for n in ("vertebrae_L1", "vertebrae_L2", "vertebrae_T12")]))
    rows, cols = stack.shape[1:]
    assert liver[:, 2].mean() < cols / 2, "the liver (patient's right) must be on the viewer's left"
    assert spine[:, 1].mean() > liver[:, 1].mean(), "the spine (posterior) must be below the liver"
    # and the RAS affine has positive diagonal: x to the right, y anterior, z superior
    assert np.all(np.diag(ras_affine)[:3] > 0)


def test_display_pixel_maps_back_to_its_voxel():
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (7, 5, 3))
    for _ in range(20):
        k = int(rng.integers(0, 3))
        r, c = int(rng.integers(0, 5)), int(rng.integers(0, 7))
        i, j, kk = display_to_voxel(r, c, k, volume.shape)
        assert volume[i, j, kk] == axial(volume[:, :, k])[r, c] == display_stack(volume)[k, r, c]


def test_label_volumes_in_millilitres():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[:5] = 1
    labels[0, 0, 0] = 2
    affine = np.diag([2.0, 2.0, 2.5, 1.0])  # 10 mm^3 per voxel
    assert label_volumes_ml(labels, affine, {1: "a", 2: "b"}) == {"a": 5.0, "b": 0.0}


def test_sniff_and_unzip_refuse_what_is_not_a_series(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert sniff(tmp_path / "x.png") == "png"
    (tmp_path / "empty.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(DemoInputError, match="empty.zip: no DICOM images"):
        unzip_dicom_series(tmp_path / "empty.zip", tmp_path / "out")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DemoInputError, match="bad.zip: not a readable zip archive"):
        unzip_dicom_series(tmp_path / "bad.zip", tmp_path / "out2")


def test_a_bundle_that_does_not_load_has_no_tab(tmp_path):
    from monai_apps.demo.models import DemoBundle, check_bundle

    assert check_bundle(DemoBundle("no_such_bundle", "x")) is not None
    assert check_bundle(DemoBundle("liver_tumor_ct_segmentation", "x", ("inference", "unet", "cpu"))) is None
    assert "missing config" in check_bundle(DemoBundle("liver_tumor_ct_segmentation", "x", ("inference", "nope")))


def test_weights_given_on_the_command_line_are_used(demo_cache, tmp_path):
    """``--weights`` with a state dict: the tab says trained, and runs those weights."""
    import torch
    from monai.bundle import ConfigParser

    from monai_apps.bundles import BUNDLES_DIR
    from monai_apps.demo.models import prepare_models

    root = BUNDLES_DIR / "liver_tumor_ct_segmentation"
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / f"{c}.json") for c in ("inference", "unet", "cpu")])
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "w.pt")
    models, _ = prepare_models(demo_cache, weights={root.name: str(tmp_path / "w.pt")}, only=["liver"])
    assert models["liver"].trained and models["liver"].model.weights == tmp_path / "w.pt"
    assert "untrained" not in models["liver"].note
    assert models["liver"].model.output_channels() == {0: "background", 1: "liver", 2: "liver tumour"}
