"""Benchmarks that print figures: generator speed and end-to-end bundle inference time and peak memory.

Each inference run happens in a fresh Python process, so its peak resident memory is that of one inference
(``ru_maxrss`` of the child) and the time includes everything a user waits for: imports, loading, preprocessing,
sliding-window inference, inversion to the input geometry and saving.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["bench_generator", "bench_inference"]

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from monai_apps.bundles import run_bundle
t1 = time.perf_counter()
args = json.loads(sys.argv[1])
run_bundle(args["bundle"], args["configs"], **args["overrides"])
t2 = time.perf_counter()
print("BENCH " + json.dumps({"import_s": t1 - t0, "run_s": t2 - t1}))
"""


def bench_generator(
    shape: Sequence[int] | None = None, seed: int = 0, repeats: int = 3, anatomy: str = "abdomen"
) -> dict:
    """Seconds to generate one volume with its labels (best of ``repeats``), and to write it as NIfTI.

    Args:
        shape: grid (default 512 x 512 x 200 for CT, 320 x 320 x 110 for cardiac MRI).
        seed: first seed (each repeat draws the next one).
        repeats: number of volumes.
        anatomy: ``abdomen``, ``chest`` or ``cardiac``.
    """
    from .data.writers import write_nifti

    if anatomy == "abdomen":
        from .data.synthetic_abdomen import generate_abdominal_ct as generate
    elif anatomy == "chest":
        from .data.synthetic_chest import generate_chest_ct as generate
    elif anatomy == "cardiac":
        from .data.synthetic_cardiac import generate_cardiac_mri as generate
    else:
        raise ValueError(f"unknown anatomy {anatomy!r}; expected abdomen, chest or cardiac")
    if shape is None:
        shape = (320, 320, 110) if anatomy == "cardiac" else (512, 512, 200)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        ct = generate(seed=seed + r, shape=tuple(shape))
        times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_nifti(Path(tmp) / "ct.nii.gz", ct.image, ct.affine)
        write_nifti(Path(tmp) / "label.nii.gz", ct.msd_label(), ct.affine)
        write_s = time.perf_counter() - t0
    result = {
        "anatomy": anatomy,
        "shape": list(shape),
        "generate_s_best": round(min(times), 2),
        "generate_s_all": [round(t, 2) for t in times],
        "write_nifti_pair_s": round(write_s, 2),
    }
    print(json.dumps(result))
    return result


def bench_inference(
    input_path: str,
    bundle: str = "liver_tumor_ct_segmentation",
    configs: Sequence[str] = ("inference", "unet", "cpu"),
    ckpt_path: str | None = None,
    **overrides,
) -> dict:
    """Run a bundle's inference on one input in a fresh process; report seconds and peak resident memory.

    Args:
        input_path: a NIfTI file, a folder, or a DICOM series folder.
        bundle: bundle name.
        configs: config files merged in order.
        ckpt_path: weights to load; default: weights of a freshly initialised network of the same configs
            (timing and memory do not depend on the weights).
        overrides: further config overrides (for example ``sw_batch_size=4``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt_path is None:
            ckpt_path = str(Path(tmp) / "model.pt")
            _initial_weights(bundle, configs, ckpt_path)
        args = {
            "bundle": bundle,
            "configs": list(configs),
            "overrides": {
                "input_path": str(input_path),
                "ckpt_path": ckpt_path,
                "output_dir": str(Path(tmp) / "out"),
                "num_workers": 0,
                **overrides,
            },
        }
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"inference failed: {proc.stderr.strip().splitlines()[-1]}")
        inner = json.loads(proc.stdout.split("BENCH ")[-1])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "input": str(input_path),
        "configs": list(configs),
        "wall_s": round(wall, 1),
        "inference_s": round(inner["run_s"], 1),
        "import_s": round(inner["import_s"], 1),
        "peak_rss_mb": round(peak_mb),
    }
    print(json.dumps(result))
    return result


def _initial_weights(bundle: str, configs: Sequence[str], path: str) -> None:
    import torch
    from monai.bundle import ConfigParser

    from .bundles import config_files

    parser = ConfigParser()
    parser.read_config(config_files(bundle, [c for c in configs]))
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
