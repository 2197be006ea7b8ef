"""The Gradio demo: one tab per bundle, each running the bundle's own inference config through ``monai.bundle``.

Start it with ``python -m monai_apps demo`` (it listens on 127.0.0.1:7860). Tabs, shown only for bundles that exist
and load:

* **3D liver + tumour** (``liver_tumor_ct_segmentation``): a NIfTI volume or a zipped DICOM series; a slice slider
  over the CT with the liver (green) and tumours (red) overlaid; liver and tumour volumes in mL.
* **2D abdominal organs** (``abdominal_organs_ct_2d_segmentation``): the same, five organs, slice-wise inference.
* **Organ patch classification** (``organ_patch_ct_classification``): a CT volume, a zipped series or one DICOM CT
  slice; click a point, see the 64 x 64 patch the bundle classifies and its class probabilities.
* **Brain metastasis** (``brain_metastasis_ct_classification``): a zipped head CT series; the patient probability,
  the per-slice probabilities plotted, the most suspicious slice.
* **Pneumonia X-ray** (``pneumonia_cxr_classification``): a DICOM, PNG or JPEG radiograph; class probabilities and
  the bundle's activation map (Grad-CAM).

Every tab has a generated example one click away. Safety: the server binds to 127.0.0.1 unless told otherwise,
uploads are limited in size (``max_file_size``), Gradio keeps uploads in a private folder made for this server
(removed at exit, and files older than an hour purged), each request works in its own private temporary folder
deleted when it ends, only the repository's bundles run with configs chosen at start-up, no path typed by a user is
ever opened, and the page loads nothing from third parties (local fonts). A wrong or corrupt file gives a one-line
message in the page; the server keeps serving.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import examples
from .display import (
    ABDOMEN_WINDOW,
    BRAIN_WINDOW,
    PALETTE,
    axial,
    display_stack,
    display_to_voxel,
    label_volumes_ml,
    load_ras,
    overlay,
    window,
)
from .inputs import DemoInputError, private_dir, stage_upload
from .models import DemoModel, prepare_models, run_bundle_inference

__all__ = ["DemoApp", "build_demo", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "1gb"


def _user_error(err: Exception):
    """A Gradio error (shown in the page) with the one-line message of ``err``."""
    import gradio as gr

    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return gr.Error(message, print_exception=False)


def _guard(fn):
    """Turn input errors (and a bundle's own input errors) into a message in the page."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DemoInputError as err:
            raise _user_error(err) from err
        except Exception as err:
            # a bundle rejects bad input with its own one-line ValueError (scripts.inputs.InputError)
            root = err
            while root.__cause__ is not None:
                root = root.__cause__
            if isinstance(root, ValueError) and type(root).__name__ in ("InputError", "ModelError", "DemoInputError"):
                raise _user_error(root) from err
            logger.exception("demo request failed")
            raise _user_error(RuntimeError(f"inference failed: {type(root).__name__}: {root}")) from err

    return wrapper


class DemoApp:
    """The demo's request handlers (one method per action), independent of the page layout.

    Args:
        models: tab key -> :class:`~monai_apps.demo.models.DemoModel` (see ``prepare_models``).
    """

    def __init__(self, models: Mapping[str, DemoModel]):
        self.models = dict(models)

    # ----- 3D liver + tumour, 2D abdominal organs -----------------------------------------------------------
    def segment(self, key: str, upload: str | None) -> tuple[dict, dict, np.ndarray, dict]:
        """Run a segmentation bundle on an upload; returns the slice state, slider settings, an overlay, volumes."""
        dm = self.models[key]
        with private_dir() as work:
            staged = stage_upload(upload, work, accept=("nifti", "dicom_series"), modality="CT")
            run_bundle_inference(dm, staged.path, work / "out")
            outputs = sorted((work / "out").rglob("*_seg.nii.gz"))
            if len(outputs) != 1:
                raise RuntimeError(f"{staged.name}: the bundle wrote {len(outputs)} segmentations")
            ct, affine = load_ras(staged.path)
            labels, _ = load_ras(outputs[0])
        if labels.shape != ct.shape:
            raise RuntimeError(f"segmentation grid {labels.shape} differs from the image grid {ct.shape}")
        names = {k: v for k, v in dm.model.output_channels().items() if k > 0}
        labels = np.rint(labels).astype(np.uint8)
        volumes = label_volumes_ml(labels, affine, names)
        if key == "liver":
            volumes = {
                "liver (with tumours) mL": round(volumes["liver"] + volumes["liver tumour"], 1),
                "liver parenchyma mL": volumes["liver"],
                "liver tumour mL": volumes["liver tumour"],
            }
        else:
            volumes = {f"{name} mL": value for name, value in volumes.items()}
        state = {
            "grey": display_stack(window(ct, *ABDOMEN_WINDOW)),
            "labels": display_stack(labels),
            "colours": [PALETTE.get(names[v], (255, 255, 0)) for v in sorted(names)],
            "name": staged.name,
        }
        per_slice = state["labels"].reshape(len(state["labels"]), -1).astype(bool).sum(axis=1)
        k = int(np.argmax(per_slice)) if per_slice.any() else len(per_slice) // 2
        slider = _slider(len(per_slice), k)
        return state, slider, self.slice_overlay(state, k), volumes

    @staticmethod
    def slice_overlay(state: dict | None, k: float | int) -> np.ndarray | None:
        """The overlay of axial slice ``k`` (display orientation: anterior up, patient's right on the left)."""
        if not state:
            return None
        k = int(np.clip(int(k), 0, len(state["grey"]) - 1))
        return overlay(state["grey"][k], state["labels"][k], state["colours"])

    # ----- organ patch classification ------------------------------------------------------------------------
    def patch_volume(self, upload: str | None) -> tuple[dict, dict, np.ndarray]:
        """Load a CT (volume, zipped series or one DICOM slice) to click on; returns state, slider, slice image."""
        with private_dir() as work:
            staged = stage_upload(upload, work, accept=("nifti", "dicom_series", "dicom_file"), modality="CT")
            if staged.kind == "dicom_file":
                _check_ct_slice(staged.path, staged.name)
            hu, affine = load_ras(staged.path)
        if hu.ndim != 3:
            raise DemoInputError(f"{staged.name}: expected a CT slice or volume, got shape {hu.shape}")
        state = {"hu": hu.astype(np.int16), "affine": affine, "name": staged.name}
        k = hu.shape[2] // 2
        return state, _slider(hu.shape[2], k), self.patch_slice(state, k)

    @staticmethod
    def patch_slice(state: dict | None, k: float | int, click: tuple[int, int] | None = None) -> np.ndarray | None:
        """Slice ``k`` of the loaded CT, abdomen window, with a cross at ``click`` (display row, column)."""
        if not state:
            return None
        k = int(np.clip(int(k), 0, state["hu"].shape[2] - 1))
        grey = axial(window(state["hu"][:, :, k], *ABDOMEN_WINDOW))
        rgb = overlay(grey, None, [])
        if click is not None:
            r, c = int(click[0]), int(click[1])
            rgb[max(r - 6, 0) : r + 7, c] = (255, 200, 0)
            rgb[r, max(c - 6, 0) : c + 7] = (255, 200, 0)
        return rgb

    def classify_point(self, state: dict | None, k: float | int, row: float, col: float):
        """Classify the patch at display pixel (``row``, ``col``) of slice ``k``: patch, probabilities, slice."""
        import nibabel as nib

        if not state:
            raise DemoInputError("load a CT first (upload one, or use the example)")
        shape = state["hu"].shape
        row, col, k = int(row), int(col), int(np.clip(int(k), 0, shape[2] - 1))
        if not (0 <= row < shape[1] and 0 <= col < shape[0]):
            raise DemoInputError(f"point ({row}, {col}) is outside the {shape[1]} x {shape[0]} slice")
        voxel = display_to_voxel(row, col, k, shape)
        dm = self.models["patch"]
        with private_dir() as work:
            path = work / "ct.nii.gz"
            nib.save(nib.Nifti1Image(state["hu"], state["affine"]), str(path))
            records = run_bundle_inference(dm, path, work / "out", click=list(voxel))
            patches = sorted((work / "out").rglob("*_click_*.png"))
            patch = _read_png(patches[0]) if patches else None
        probabilities = _class_probabilities(records[0], dm)
        shown = np.kron(patch, np.ones((4, 4), dtype=patch.dtype)) if patch is not None else None
        return shown, probabilities, self.patch_slice(state, k, (row, col)), {"voxel_ras": list(voxel)}

    # ----- brain metastasis ----------------------------------------------------------------------------------
    def brain(self, upload: str | None):
        """Patient probability, per-slice probability plot and the most suspicious slice of a zipped head CT."""
        dm = self.models["brain"]
        with private_dir() as work:
            staged = stage_upload(upload, work, accept=("dicom_series",), modality="CT")
            records = run_bundle_inference(dm, staged.path, work / "out")
            hu, _ = load_ras(staged.path)
        record = records[0]
        logits = np.atleast_1d(np.asarray(record.get("slice_logits", []), dtype=np.float64))
        probs = 1.0 / (1.0 + np.exp(-logits))
        z = np.atleast_1d(np.asarray(record.get("slice_z", np.arange(len(probs))), dtype=np.float64))
        index = int(record["suspicious_slice"])
        probability, threshold = float(record["probability"]), float(record.get("threshold", 0.5))
        finding = "brain metastasis suspected" if probability >= threshold else "no brain metastasis detected"
        image = overlay(axial(window(hu[:, :, int(np.clip(index, 0, hu.shape[2] - 1))], *BRAIN_WINDOW)), None, [])
        summary = {
            "patient probability": round(probability, 4),
            "decision threshold": round(threshold, 4),
            "finding": finding,
            "most suspicious slice (index, inferior to superior)": index,
            "slices analysed": int(len(probs)),
        }
        return (
            {"metastasis": probability, "no metastasis": 1 - probability},
            _slice_plot(z, probs, threshold),
            image,
            summary,
        )

    # ----- pneumonia X-ray -----------------------------------------------------------------------------------
    def cxr(self, upload: str | None):
        """Class probabilities and the activation map of a chest radiograph (DICOM, PNG or JPEG)."""
        dm = self.models["cxr"]
        with private_dir() as work:
            staged = stage_upload(upload, work, accept=("dicom_file", "image"), modality=None)
            records = run_bundle_inference(dm, staged.path, work / "out")
            cams = sorted((work / "out").rglob("*_cam.png"))
            cam = _read_png(cams[0]) if cams else None
        return _class_probabilities(records[0], dm), cam


def _slider(n_slices: int, value: int) -> dict[str, Any]:
    """Slider settings for ``n_slices`` slices (Gradio needs minimum < maximum: one slice gives a fixed 0..1)."""
    return {"minimum": 0, "maximum": max(n_slices - 1, 1), "value": int(value), "interactive": n_slices > 1}


def _check_ct_slice(path: Path, name: str) -> None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as err:
        raise DemoInputError(f"{name}: unreadable DICOM file ({type(err).__name__})") from err
    if str(ds.get("Modality", "")) != "CT":
        raise DemoInputError(f"{name}: DICOM modality {ds.get('Modality', '?')} is not CT")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)


def _class_probabilities(record: dict, dm: DemoModel) -> dict[str, float]:
    names = dm.model.output_channels()
    pred = np.atleast_1d(np.asarray(record.get("pred", []), dtype=np.float64)).ravel()
    if pred.size != len(names):
        raise RuntimeError(f"bundle output has {pred.size} values for {len(names)} classes")
    return {names[i]: float(pred[i]) for i in range(pred.size)}


def _slice_plot(z: np.ndarray, probs: np.ndarray, threshold: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), dpi=100)
    ax = fig.add_subplot(111)
    ax.plot(z, probs, marker="o", color="tab:red", label="slice probability")
    ax.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("slice height z (mm, inferior to superior)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def build_demo(models: Mapping[str, DemoModel], hidden: Mapping[str, str] | None = None):
    """The Gradio ``Blocks``: one tab per ready model, each with a generated example.

    Every action has an API name (``/liver_segment``, ``/liver_slice``, ``/organs_segment``, ``/organs_slice``,
    ``/patch_load``, ``/patch_slice``, ``/patch_classify``, ``/brain_classify``, ``/cxr_classify`` and the
    ``*_example`` variants) for scripted use with ``gradio_client``.
    """
    import gradio as gr

    app = DemoApp(models)
    hidden = dict(hidden or {})
    with gr.Blocks(title="MONAI CT bundles demo", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# MONAI CT bundles\nEach tab runs a bundle's own inference config through `monai.bundle`. "
            "Research and engineering reference only; **not for clinical use**."
        )
        if hidden:
            gr.Markdown(
                "Hidden tabs (bundle missing or not loading): " + "; ".join(f"{k}: {v}" for k, v in hidden.items())
            )
        for key in ("liver", "organs"):
            if key in models:
                _segmentation_tab(gr, app, key, models[key])
        if "patch" in models:
            _patch_tab(gr, app, models["patch"])
        if "brain" in models:
            _brain_tab(gr, app, models["brain"])
        if "cxr" in models:
            _cxr_tab(gr, app, models["cxr"])
    demo.demo_app = app
    return demo


def _segmentation_tab(gr, app: DemoApp, key: str, dm: DemoModel) -> None:
    with gr.Tab(dm.bundle.title, id=key):
        gr.Markdown(dm.note)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="CT: NIfTI (.nii, .nii.gz) or a zipped DICOM series (.zip)", elem_id=f"{key}_upload"
                )
                run = gr.Button("Segment", variant="primary", elem_id=f"{key}_run")
                example = gr.Button("Example: generated abdominal CT", elem_id=f"{key}_example")
                volumes = gr.JSON(label="Volumes", elem_id=f"{key}_volumes")
            with gr.Column(scale=2):
                image = gr.Image(
                    label="Axial slice (patient's right on the left)",
                    format="png",
                    elem_id=f"{key}_overlay",
                    interactive=False,
                )
                slider = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id=f"{key}_slider", interactive=True)
        state = gr.State(None)

        def _run(path):
            st, sl, img, vols = _guard(app.segment)(key, path)
            return st, gr.update(**sl), img, vols

        def _example():
            return _run(str(examples.abdomen_ct()))

        outputs = [state, slider, image, volumes]
        run.click(_run, inputs=[upload], outputs=outputs, api_name=f"{key}_segment")
        example.click(_example, inputs=None, outputs=outputs, api_name=f"{key}_example")
        slider.change(app.slice_overlay, inputs=[state, slider], outputs=[image], api_name=f"{key}_slice")


def _patch_tab(gr, app: DemoApp, dm: DemoModel) -> None:
    with gr.Tab(dm.bundle.title, id="patch"):
        gr.Markdown(dm.note + "\n\nLoad a CT, pick a slice, then click a point on it.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(
                    label="CT: NIfTI, a zipped DICOM series, or one DICOM CT slice", elem_id="patch_upload"
                )
                load = gr.Button("Load", variant="primary", elem_id="patch_load")
                example = gr.Button("Example: generated abdominal CT, click in the liver", elem_id="patch_example")
                row = gr.Number(label="Row", precision=0, elem_id="patch_row")
                col = gr.Number(label="Column", precision=0, elem_id="patch_col")
                classify = gr.Button("Classify this point", elem_id="patch_classify")
            with gr.Column(scale=2):
                image = gr.Image(label="Click a point", format="png", elem_id="patch_image", interactive=False)
                slider = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="patch_slider", interactive=True)
            with gr.Column(scale=1):
                patch = gr.Image(
                    label="64 x 64 patch (shown x4)", format="png", elem_id="patch_patch", interactive=False
                )
                probs = gr.Label(label="Class probabilities", elem_id="patch_probs")
                where = gr.JSON(label="Voxel (RAS index)", elem_id="patch_voxel")
        state = gr.State(None)

        def _load(path):
            st, sl, img = _guard(app.patch_volume)(path)
            return st, gr.update(**sl), img

        def _classify(st, k, r, c):
            return _guard(app.classify_point)(st, k, r, c)

        def _select(st, k, evt: gr.SelectData):
            c, r = evt.index  # Gradio gives (x, y): column, row
            return (r, c, *_classify(st, k, r, c))

        def _example():
            st, sl, _ = _guard(app.patch_volume)(str(examples.abdomen_ct()))
            world = np.array([*examples.liver_centre_world(), 1.0])
            i, j, k = (int(round(v)) for v in (np.linalg.inv(st["affine"]) @ world)[:3])
            shape = st["hu"].shape
            r, c = shape[1] - 1 - j, shape[0] - 1 - i  # the RAS voxel at its display pixel
            sl["value"] = k
            return (st, gr.update(**sl), r, c, *_classify(st, k, r, c))

        load.click(_load, inputs=[upload], outputs=[state, slider, image], api_name="patch_load")
        slider.change(app.patch_slice, inputs=[state, slider], outputs=[image], api_name="patch_slice")
        classify.click(
            _classify, inputs=[state, slider, row, col], outputs=[patch, probs, image, where], api_name="patch_classify"
        )
        image.select(_select, inputs=[state, slider], outputs=[row, col, patch, probs, image, where], api_name=False)
        example.click(
            _example,
            inputs=None,
            outputs=[state, slider, row, col, patch, probs, image, where],
            api_name="patch_example",
        )


def _brain_tab(gr, app: DemoApp, dm: DemoModel) -> None:
    with gr.Tab(dm.bundle.title, id="brain"):
        gr.Markdown(dm.note)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Head CT: a zipped DICOM series (.zip)", elem_id="brain_upload")
                run = gr.Button("Classify", variant="primary", elem_id="brain_run")
                example = gr.Button("Example: generated head CT with metastases", elem_id="brain_example")
                label = gr.Label(label="Patient", elem_id="brain_label")
                summary = gr.JSON(label="Result", elem_id="brain_summary")
            with gr.Column(scale=2):
                plot = gr.Plot(label="Per-slice probabilities", elem_id="brain_plot")
                image = gr.Image(label="Most suspicious slice", format="png", elem_id="brain_slice", interactive=False)

        def _run(path):
            lab, fig, img, summ = _guard(app.brain)(path)
            return lab, fig, img, summ

        outputs = [label, plot, image, summary]
        run.click(_run, inputs=[upload], outputs=outputs, api_name="brain_classify")
        example.click(lambda: _run(str(examples.head_ct_zip())), inputs=None, outputs=outputs, api_name="brain_example")


def _cxr_tab(gr, app: DemoApp, dm: DemoModel) -> None:
    with gr.Tab(dm.bundle.title, id="cxr"):
        gr.Markdown(dm.note)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Chest radiograph: DICOM (.dcm), PNG or JPEG", elem_id="cxr_upload")
                run = gr.Button("Classify", variant="primary", elem_id="cxr_run")
                example = gr.Button("Example: generated radiograph with consolidation", elem_id="cxr_example")
                label = gr.Label(label="Class probabilities", elem_id="cxr_label")
            with gr.Column(scale=2):
                cam = gr.Image(label="Activation map (Grad-CAM)", format="png", elem_id="cxr_cam", interactive=False)

        def _run(path):
            return _guard(app.cxr)(path)

        run.click(_run, inputs=[upload], outputs=[label, cam], api_name="cxr_classify")
        example.click(
            lambda: _run(str(examples.chest_xray())), inputs=None, outputs=[label, cam], api_name="cxr_example"
        )


def _offline_theme():
    """Gradio's default theme with local fonts: the page asks no third party (Google Fonts) for anything."""
    import gradio as gr

    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "Consolas", "monospace"]
    )


def _private_upload_dir() -> Path:
    """A private (0700) folder for Gradio's uploads, made once per process and removed at exit."""
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current and Path(current).name.startswith("monai_demo_uploads_"):
        return Path(current)
    folder = Path(tempfile.mkdtemp(prefix="monai_demo_uploads_"))
    os.chmod(folder, 0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    return folder


def launch(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    weights: Mapping[str, str] | None = None,
    configs: Mapping[str, Sequence[str]] | None = None,
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE,
    tabs: Sequence[str] | None = None,
    block: bool = True,
) -> Any:
    """Build and start the demo.

    Args:
        host: the address to listen on (``127.0.0.1``: this machine only).
        port: the port (0 or ``None``: the first free one from 7860).
        weights: bundle id -> weights (bundle folder, TorchScript export or ``.pt`` state dict).
        configs: bundle id -> config variants merged over ``inference`` (default: each bundle's CPU profile).
        max_file_size: the largest upload, e.g. ``"1gb"`` or a number of bytes.
        tabs: tab keys to show (``liver``, ``organs``, ``patch``, ``brain``, ``cxr``; default all ready ones).
        block: wait until the server is stopped (``False`` returns the running ``Blocks``, for tests).

    Returns:
        the running ``gradio.Blocks``.
    """
    from monai_apps.deploy.runner import quiet_known_warnings, raise_stack_limit

    raise_stack_limit()
    quiet_known_warnings()
    _private_upload_dir()  # before Gradio reads GRADIO_TEMP_DIR
    models, hidden = prepare_models(examples.cache_dir(), weights=weights, configs=configs, only=tabs)
    if not models:
        raise RuntimeError(f"no bundle is ready for the demo: {hidden}")
    demo = build_demo(models, hidden)
    demo.queue(default_concurrency_limit=1)
    demo.launch(
        theme=_offline_theme(),
        server_name=host,
        server_port=int(port) if port else None,
        max_file_size=max_file_size,
        share=False,
        show_error=True,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo
