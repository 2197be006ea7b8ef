"""The ``python -m monai_apps`` command line (Google ``fire``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["Commands", "main"]


class Commands:
    """MONAI bundles for CT imaging: data generation, the quickstart job and bundle runs.

    Examples:
        python -m monai_apps generate --out data/Task03_Liver --n_cases 20 --n_test 4
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
        phase: str = "portal_venous",
        n_tumours: int | None = None,
        workers: int = 1,
    ) -> str:
        """Generate synthetic abdominal CT with liver, tumour and organ labels.

        Args:
            out: destination folder.
            layout: msd (Decathlon Task03_Liver), totalsegmentator (Subject_###/ct.nii.gz + segmentations/),
                or dicom (one DICOM CT series per case + labels/<case>.nii.gz).
            n_cases: training cases.
            n_test: held-out cases.
            seed: cohort seed (the same seed gives the same cohort).
            shape: voxels per axis, e.g. "[512,512,200]" (default 512 x 512 x 260-330 mm of slices).
            spacing: voxel size in mm, e.g. "[0.8,0.8,2.5]" (default drawn per case).
            phase: portal_venous or non_contrast.
            n_tumours: liver tumours per case (default 0-3 at random).
            workers: processes.
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

    def bench_generator(self, shape: Sequence[int] = (512, 512, 200), seed: int = 0, repeats: int = 3) -> None:
        """Time the synthetic CT generator (default: a 512 x 512 x 200 volume with its labels)."""
        from .bench import bench_generator

        bench_generator(shape=shape, seed=seed, repeats=repeats)

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

    def bundles(self) -> list[str]:
        """List the bundles in bundles/."""
        from .bundles import list_bundles

        return list_bundles()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; bad input ends with one line on stderr and exit status 1."""
    import fire

    try:
        fire.Fire(Commands(), command=list(argv) if argv is not None else None, name="monai_apps")
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        root = err
        while root.__cause__ is not None and isinstance(root.__cause__, Exception):
            root = root.__cause__
        print(f"error: {root}", file=sys.stderr)
        return 1
    return 0
