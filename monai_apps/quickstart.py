"""The main job: generate a small cohort, train the liver + tumour bundle on the CPU, evaluate, infer.

Run it with ``python -m monai_apps quickstart`` (or ``make quickstart``). Everything it writes goes under
``--out`` (default ``runs/quickstart``): the generated Decathlon folder, checkpoints, TensorBoard logs, metrics CSVs,
overlay PNGs and the inference NIfTI.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from .bundles import run_bundle
from .data.cohort import generate_cohort

__all__ = ["QUICKSTART_CONFIGS", "quickstart", "read_metric_summary"]

BUNDLE = "liver_tumor_ct_segmentation"
#: the bundle's training config with its 3D UNet variant and CPU profile merged over it
QUICKSTART_CONFIGS = ("train", "unet", "cpu")


def read_metric_summary(output_dir: str | Path) -> dict[str, float]:
    """The aggregated metrics that ``MetricsSaver`` writes to ``metrics.csv`` (``name,value`` rows)."""
    path = Path(output_dir) / "metrics.csv"
    with open(path) as f:
        return {name: float(value) for name, value in csv.reader(f)}


def quickstart(
    out: str = "runs/quickstart",
    n_cases: int = 16,
    n_test: int = 4,
    seed: int = 0,
    max_epochs: int = 40,
    network: str = "unet",
    workers: int = 2,
) -> dict:
    """Generate data, train, evaluate on held-out cases and run inference; print where everything is.

    Args:
        out: output folder.
        n_cases: generated training + validation cases.
        n_test: generated held-out cases (evaluation and inference).
        seed: cohort seed.
        max_epochs: training epochs of the CPU profile.
        network: ``unet`` (the CPU profile's 3D UNet) or ``dynunet`` (the bundle's default network).
        workers: processes for data generation and loading.

    Returns:
        a summary dict (also written to ``<out>/summary.json``).
    """
    if network not in ("unet", "dynunet"):
        raise ValueError(f"network must be 'unet' or 'dynunet', got {network!r}")
    out_dir = Path(out).resolve()
    data_dir = out_dir / "data" / "Task03_Liver"
    ckpt_dir, eval_dir, infer_dir = out_dir / "models", out_dir / "eval", out_dir / "inference"
    configs = [c for c in QUICKSTART_CONFIGS if network == "unet" or c != "unet"]
    common = {"ckpt_dir": str(ckpt_dir), "output_dir": str(eval_dir), "num_workers": workers}
    times = {}

    t0 = time.perf_counter()
    generate_cohort(data_dir, n_cases=n_cases, n_test=n_test, seed=seed, shape=(512, 512, 64), workers=workers)
    times["generate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_bundle(BUNDLE, configs, dataset_dir=str(data_dir), max_epochs=max_epochs, **common)
    times["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_bundle(BUNDLE, [*configs, "evaluate"], dataset_dir=str(data_dir), **common)
    times["evaluate_s"] = time.perf_counter() - t0
    metrics = read_metric_summary(eval_dir)

    t0 = time.perf_counter()
    case = sorted((data_dir / "imagesTs").glob("*.nii.gz"))[0]
    infer_configs = ["inference", *[c for c in configs if c != "train"]]
    run_bundle(
        BUNDLE,
        infer_configs,
        input_path=str(case),
        ckpt_path=str(ckpt_dir / "model.pt"),
        output_dir=str(infer_dir),
        num_workers=0,
    )
    times["inference_s"] = time.perf_counter() - t0

    summary = {
        "bundle": BUNDLE,
        "configs": configs,
        "held_out_cases": n_test,
        "metrics": metrics,
        "times": {k: round(v, 1) for k, v in times.items()},
        "paths": {
            "data": str(data_dir),
            "checkpoint": str(ckpt_dir / "model.pt"),
            "metrics": str(eval_dir),
            "overlays": str(eval_dir / "overlays"),
            "tensorboard": str(eval_dir),
            "inference": str(next(infer_dir.glob("*_seg.nii.gz"), infer_dir)),
        },
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    return summary


def format_summary(summary: dict) -> str:
    """A short human-readable report of a quickstart run."""
    m = summary["metrics"]
    lines = [
        "",
        f"quickstart: {summary['bundle']} ({' + '.join(summary['configs'])}) on {summary['held_out_cases']} "
        "held-out generated cases",
        f"  liver Dice {m.get('val_liver_dice', float('nan')):.3f}   tumour Dice "
        f"{m.get('val_tumor_dice', float('nan')):.3f}   liver HD95 {m.get('val_liver_hd95', float('nan')):.1f} mm"
        f"   tumour HD95 {m.get('val_tumor_hd95', float('nan')):.1f} mm",
        "  times: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in summary["times"].items()),
    ]
    lines += [f"  {k:<12} {v}" for k, v in summary["paths"].items()]
    return "\n".join(lines)
