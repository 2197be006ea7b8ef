"""The ``python -m monai_apps`` command line (Google ``fire``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["Commands", "main"]


class Zoo:
    """Share bundles in MONAI model-zoo format."""

    def export(
        self,
        bundle: str,
        out: str = "dist",
        ckpt: str | None = None,
        variants: Sequence[str] = (),
        url_base: str | None = None,
    ) -> dict:
        """Write <bundle>_v<version>.zip (weights, TorchScript, configs, docs), large_files.yml and model_info.json.

        Args:
            bundle: bundle name in bundles/.
            out: destination folder.
            ckpt: trained weights (default bundles/<bundle>/models/model.pt).
            variants: config files the weights were trained with, e.g. "[unet,cpu]" (merged into the export).
            url_base: where the files will be hosted (default file:// URIs of the output folder).
        """
        from .zoo import export_bundle

        return export_bundle(bundle, out, ckpt=ckpt, variants=variants, url_base=url_base)


class Commands:
    """MONAI bundles for CT imaging: data generation, the quickstart job and bundle runs.

    Examples:
        python -m monai_apps generate --out data/Task03_Liver --n_cases 20 --n_test 4
        python -m monai_apps generate_head --out data/brain_mets --n_patients 60 --n_test 40
        python -m monai_apps quickstart
        python -m monai_apps bundles
    """

    def generate(
        self,
        out: str,
        layout: str = "msd",
        n_cases: int = 8,
        n_test: int = 0,
        seed: int = 0,
        shape: Sequence[int | None] | None = None,
        spacing: Sequence[float] | None = None,
        phase: str | None = None,
        n_tumours: int | None = None,
        workers: int = 1,
        anatomy: str = "abdomen",
        add: bool = False,
    ) -> str:
        """Generate synthetic abdominal CT (liver tumours), chest CT (lung tumours) or cardiac MRI (left atrium).

        Args:
            out: destination folder.
            layout: msd (Decathlon Task03_Liver, Task06_Lung or Task02_Heart), totalsegmentator
                (Subject_###/ct.nii.gz + segmentations/), or dicom (one DICOM series per case + labels/<case>.nii.gz).
            n_cases: training cases.
            n_test: held-out cases.
            seed: cohort seed (the same seed gives the same cohort).
            shape: voxels per axis, e.g. "[512,512,200]" (default 512 x 512 x 260-330 mm of slices).
            spacing: voxel size in mm, e.g. "[0.8,0.8,2.5]" (default drawn per case).
            phase: abdomen: portal_venous (default) or non_contrast; chest: contrast or non_contrast (default
                drawn per case); not for cardiac.
            n_tumours: liver or lung tumours per case (default 0-3 at random); not for cardiac.
            workers: processes.
            anatomy: abdomen, chest or cardiac.
            add: add the cases to the cohort already in `out` (ids continue after its last case; dataset.json and
                cohort.json list both); give another seed than the folder's.
        """
        from .data.cohort import generate_cohort

        return str(
            generate_cohort(
                out,
                n_cases=n_cases,
                n_test=n_test,
                seed=seed,
                layout=layout,
                shape=shape,
                spacing=spacing,
                phase=phase,
                n_tumours=n_tumours,
                workers=workers,
                anatomy=anatomy,
                add=add,
            )
        )

    def generate_head(
        self,
        out: str,
        n_patients: int = 60,
        n_test: int = 0,
        seed: int = 0,
        positive_fraction: float = 0.5,
        shape: Sequence[int | None] | None = None,
        spacing: Sequence[float] | None = None,
        workers: int = 1,
    ) -> str:
        """Generate synthetic head CT DICOM series (0-3 brain metastases each) with labels.csv.

        Args:
            out: destination folder: <patient>/ DICOM series, labels.csv, labels_test.csv, lesions.csv.
            n_patients: training + validation patients (labels.csv).
            n_test: held-out patients (labels_test.csv).
            seed: cohort seed.
            positive_fraction: share of patients with metastases.
            shape: voxels per axis, e.g. "[256,256,null]" (default 256 x 256 x enough 5 mm slices).
            spacing: voxel size in mm, e.g. "[0.9,0.9,5.0]" (the default).
            workers: processes.
        """
        from .data.synthetic_head import generate_head_cohort

        return str(
            generate_head_cohort(
                out,
                n_patients=n_patients,
                n_test=n_test,
                seed=seed,
                positive_fraction=positive_fraction,
                shape=shape,
                spacing=spacing,
                workers=workers,
            )
        )

    def quickstart(
        self,
        out: str = "runs/quickstart",
        n_cases: int = 16,
        n_test: int = 4,
        seed: int = 0,
        max_epochs: int = 40,
        network: str = "unet",
        workers: int = 2,
    ) -> None:
        """The main job: generate a cohort, train the liver + tumour bundle on the CPU, evaluate and infer.

        Args:
            out: output folder.
            n_cases: generated training + validation cases.
            n_test: generated held-out cases.
            seed: cohort seed.
            max_epochs: training epochs.
            network: unet (the CPU profile) or dynunet (the bundle's default network; slower on a CPU).
            workers: processes for data generation and loading.
        """
        from .quickstart import quickstart

        quickstart(
            out=out, n_cases=n_cases, n_test=n_test, seed=seed, max_epochs=max_epochs, network=network, workers=workers
        )

    def bench_generator(
        self,
        shape: Sequence[int] | None = None,
        seed: int = 0,
        repeats: int = 3,
        anatomy: str = "abdomen",
    ) -> None:
        """Time a synthetic generator with its labels: abdomen or chest CT (default 512 x 512 x 200), or cardiac MRI
        (default 320 x 320 x 110)."""
        from .bench import bench_generator

        bench_generator(shape=shape, seed=seed, repeats=repeats, anatomy=anatomy)

    def bench_inference(
        self,
        input_path: str,
        bundle: str = "liver_tumor_ct_segmentation",
        configs: Sequence[str] = ("inference", "unet", "cpu"),
        ckpt_path: str | None = None,
    ) -> None:
        """Time one bundle inference end to end in a fresh process and report its peak memory.

        Args:
            input_path: a NIfTI file, a folder of them, or a DICOM series folder.
            bundle: bundle name.
            configs: config files merged in order, e.g. "[inference,unet,cpu]".
            ckpt_path: weights (default: an untrained network of the same configs; time does not depend on it).
        """
        from .bench import bench_inference

        bench_inference(input_path, bundle=bundle, configs=configs, ckpt_path=ckpt_path)

    def prepare_organ_patches(
        self,
        input_dir: str,
        out_dir: str,
        classes: str | None = None,
        patch_size: int = 64,
        stride: int = 16,
        purity: float = 0.95,
        min_fill: float = 0.9,
        window: Sequence[float] = (40.0, 400.0),
        spacing: float | None = None,
        slice_step: int = 1,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        balance: int = 500,
        seed: int = 0,
        overwrite: bool = False,
    ) -> None:
        """TotalSegmentator subject folders -> class folders of 64x64 organ patch PNGs, split by subject, balanced.

        Args:
            input_dir: folder of subjects (ct.nii.gz + segmentations/*.nii.gz, or combined.nii.gz).
            out_dir: destination (train/, val/, test/, extracted/, manifest.csv, summary.json).
            classes: default class names "kidney,liver" or JSON '{"kidney": ["kidney_left", "kidney_right"]}'.
            patch_size: patch side in pixels.
            stride: sliding-window step in pixels.
            purity: keep a patch when one class covers more than this share of its labelled pixels...
            min_fill: ...and labelled pixels fill at least this share of it.
            window: HU level and width mapped to 0..255.
            spacing: resample in-plane to this many mm first (default: native).
            slice_step: use every n-th axial slice.
            val_fraction: share of subjects for validation.
            test_fraction: share of subjects held out for testing.
            balance: patches per class after balancing (0: off).
            seed: split, sampling and augmentation seed.
            overwrite: replace a non-empty out_dir.
        """
        import json as _json

        from .data.organ_patches import prepare_organ_patches

        summary = prepare_organ_patches(
            input_dir,
            out_dir,
            classes=classes,
            patch_size=patch_size,
            stride=stride,
            purity=purity,
            min_fill=min_fill,
            window=tuple(window),
            spacing=spacing,
            slice_step=slice_step,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            balance=balance or None,
            seed=seed,
            overwrite=overwrite,
        )
        print(_json.dumps({k: summary[k] for k in ("extracted", "missing_classes", "timing_s", "n_patches")}))

    def balance_patches(self, src: str, dst: str, target: int = 500, augment: bool = True, seed: int = 0) -> None:
        """Undersample large classes and top up small ones with augmented copies (src/<class>/*.png -> dst).

        Args:
            src: folder of class folders of PNGs.
            dst: destination (replaced).
            target: patches per class.
            augment: top up small classes with rotated, mirrored, brightness-changed copies.
            seed: sampling and augmentation seed.
        """
        import json as _json

        from .data.organ_patches import balance_patches

        print(_json.dumps(balance_patches(src, dst, target=target, augment=augment, seed=seed)))

    def bench_organ_patches(self, shape: Sequence[int] = (512, 512, 200), seed: int = 0, stride: int = 16) -> None:
        """Patches per second of the organ-patch preparation on a generated 512 x 512 x 200 subject."""
        from .data.organ_patches import bench_organ_patches

        bench_organ_patches(shape=tuple(shape), seed=seed, stride=stride)

    def slices(
        self,
        source: str,
        out: str,
        classes: str = "abdominal_organs",
        normalize: str = "window",
        window: Sequence[float] = (-160.0, 240.0),
        size: Sequence[int] | None = (512, 512),
        skip_first: int = 0,
        keep_empty: float = 0.1,
        val_fraction: float = 0.2,
        seed: int = 0,
        allow_empty: bool = False,
        context: int = 0,
    ) -> str:
        """Prepare a 2D slice dataset (slices on disk + datalist.json split by patient) for the 2D bundles.

        Args:
            source: Decathlon folder, folder of TotalSegmentator subjects, or a datalist JSON of image/label pairs.
            out: destination folder (a rerun with the same settings reuses what is there).
            classes: abdominal_organs, lung_tumour or left_atrium, or a JSON mapping, e.g.
                '{"liver": ["liver"], "bowel": ["small_bowel", "colon"]}'.
            normalize: window (HU window to 0..1), lung (clip -1000..3071, divide by 3071), zscore (MRI) or none.
            window: HU window, e.g. "[-160,240]".
            size: slice size, e.g. "[512,512]"; "None" keeps the volume's.
            skip_first: slices skipped at the inferior end of each volume.
            keep_empty: share of training slices without foreground that are kept.
            val_fraction: share of patients held for validation.
            seed: split and sampling seed.
            allow_empty: accept cases without any foreground (patients without tumour).
            context: neighbouring slices stored on each side of a training slice as extra channels (2.5D input
                of the lung tumour bundle's context variant); 0 stores single slices.
        """
        import json as _json

        from .data.slices import prepare_slices

        if isinstance(classes, str) and classes.lstrip().startswith("{"):
            classes = _json.loads(classes)
        return str(
            prepare_slices(
                source,
                out,
                classes=classes,
                normalize=normalize,
                window=window,
                size=size,
                skip_first=skip_first,
                keep_empty=keep_empty,
                val_fraction=val_fraction,
                seed=seed,
                allow_empty=allow_empty,
                context=context,
            )
        )

    def generate_cxr(
        self,
        out: str,
        n_train: int = 600,
        n_val: int = 100,
        n_test: int = 300,
        seed: int = 0,
        size: int = 512,
        pneumonia_fraction: float = 0.5,
        jpeg2000_fraction: float = 0.25,
        workers: int = 1,
    ) -> str:
        """Synthetic PA chest radiographs with and without consolidation, as DICOM CR/DX files.

        Writes {train,val,test}/{NORMAL,PNEUMONIA}/*.dcm (MONOCHROME1 and MONOCHROME2, some JPEG 2000 lossless,
        some with a rescale slope/intercept) and labels.csv.

        Args:
            out: destination folder.
            n_train: training images.
            n_val: validation images.
            n_test: held-out test images.
            seed: dataset seed.
            size: rows and columns per image.
            pneumonia_fraction: share of images with consolidation.
            jpeg2000_fraction: share of files compressed with JPEG 2000 lossless.
            workers: processes.
        """
        from .data.synthetic_cxr import generate_cxr_dataset

        return str(
            generate_cxr_dataset(
                out,
                n_train=n_train,
                n_val=n_val,
                n_test=n_test,
                seed=seed,
                size=size,
                pneumonia_fraction=pneumonia_fraction,
                jpeg2000_fraction=jpeg2000_fraction,
                workers=workers,
            )
        )

    zoo = Zoo()

    def bench(
        self,
        out: str = "runs/bench",
        bundles: Sequence[str] | None = None,
        repeats: int = 5,
        batch: int = 2,
        data_side: bool = True,
    ):
        """Throughput and peak memory of every bundle's network on eager/bf16/TorchScript/ONNX Runtime (and GPU).

        Writes bench.csv, bench.json and bench.png; also measures this CPU's matmul GFLOP/s, preprocessing seconds
        of a 512 x 512 x 200 CT and training s/iteration with and without caching.

        Args:
            out: output folder.
            bundles: bundle names, e.g. "[liver_tumor_ct_segmentation]" (default all).
            repeats: timed forward passes per measurement (the best is kept).
            batch: network inputs per forward pass.
            data_side: also the data-side figures (minutes; ``--data_side False`` for the networks only).
        """
        from .bench_suite import run_benchmarks

        run_benchmarks(out=out, bundles=bundles, repeats=repeats, batch=batch, data_side=data_side)

    def export(
        self,
        bundle: str,
        out: str = "exports",
        configs: Sequence[str] = ("inference",),
        ckpt: str | None = None,
        formats: Sequence[str] = ("torchscript", "onnx"),
    ) -> dict:
        """Export a bundle's network to TorchScript and ONNX and report the largest difference to PyTorch.

        Args:
            bundle: bundle name.
            out: output folder (model.ts, model.onnx).
            configs: config files that build the network, e.g. "[inference,unet,cpu]".
            ckpt: weights (default the bundle's models/model.pt, else an initialised network).
            formats: torchscript and/or onnx.
        """
        from .export import export_network

        return export_network(bundle, out, configs=configs, ckpt=ckpt, formats=formats)

    def demo(
        self,
        host: str = "127.0.0.1",
        port: int = 7860,
        weights: dict | None = None,
        configs: dict | None = None,
        max_file_size: str = "1gb",
        tabs: Sequence[str] | None = None,
    ) -> None:
        """The Gradio demo: one tab per bundle, each running the bundle's inference config (http://127.0.0.1:7860).

        Args:
            host: address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes it to the network).
            port: port.
            weights: bundle -> weights, e.g. '{"liver_tumor_ct_segmentation": "runs/quickstart/models/model.pt"}'
                (default: each bundle's models/model.pt, else untrained weights, said so in the tab).
            configs: bundle -> config variants, e.g. '{"liver_tumor_ct_segmentation": ["unet", "cpu"]}'.
            max_file_size: largest upload, e.g. "1gb".
            tabs: tabs to show, e.g. "[liver,brain]" (liver, organs, patch, brain, cxr; default all ready ones).
        """
        from .demo import launch

        launch(host=host, port=port, weights=weights, configs=configs, max_file_size=max_file_size, tabs=tabs)

    def bundles(self) -> list[str]:
        """List the bundles in bundles/."""
        from .bundles import list_bundles

        return list_bundles()


_BOOL_WORDS = {"true": "True", "false": "False"}


def normalize_bool_flags(argv: Sequence[str]) -> list[str]:
    """Spell flag values ``true``/``false`` (any case) as ``True``/``False``.

    fire parses flag values with ``ast.literal_eval``, so ``--allow_empty false`` would arrive as the (truthy) string
    ``"false"``. Only values of ``--flag value`` and ``--flag=value`` pairs are rewritten.

    Examples:
        >>> normalize_bool_flags(["slices", "--allow_empty", "false", "--out=x", "--data_side=TRUE"])
        ['slices', '--allow_empty', 'False', '--out=x', '--data_side=True']
    """
    out: list[str] = []
    for i, token in enumerate(argv):
        if token.startswith("--") and "=" in token:
            flag, value = token.split("=", 1)
            token = f"{flag}={_BOOL_WORDS.get(value.lower(), value)}"
        elif i > 0 and argv[i - 1].startswith("--") and "=" not in argv[i - 1]:
            token = _BOOL_WORDS.get(token.lower(), token)
        out.append(token)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; bad input ends with one line on stderr and exit status 1."""
    import fire

    args = normalize_bool_flags(list(argv) if argv is not None else sys.argv[1:])
    try:
        fire.Fire(Commands(), command=args, name="monai_apps")
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        root = err
        while root.__cause__ is not None and isinstance(root.__cause__, Exception):
            root = root.__cause__
        print(f"error: {root}", file=sys.stderr)
        return 1
    return 0
