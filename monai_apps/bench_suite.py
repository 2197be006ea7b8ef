"""``python -m monai_apps bench``: inference throughput and peak memory of every bundle's network, per runtime.

For each bundle (and each variant file that changes its network, e.g. the liver bundle's ``unet.json``) and each
runtime — eager PyTorch (float32, and bfloat16 autocast on CPUs with native bfloat16), TorchScript and ONNX
Runtime; on a GPU also eager float32 and AMP — a fresh process builds the network, warms it up and times
``repeats`` forward passes of a batch of the bundle's own input size (a 2D image, or a 3D sliding-window patch).
The parent records the child's peak resident memory. FLOPs per input (``torch.utils.flop_counter``) turn the
throughput into achieved GFLOP/s, read against this machine's measured matmul GFLOP/s.

Data-side figures: preprocessing seconds for one 512 x 512 x 200 CT (the liver bundle's inference preprocessing)
and training seconds per iteration of the liver CPU profile with ``CacheDataset`` versus a plain ``Dataset``.

Outputs ``bench.csv``, ``bench.json`` and ``bench.png`` in ``out``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .bundles import BUNDLES_DIR, bundle_imports, list_bundles

__all__ = ["bench_model", "matmul_gflops", "network_profiles", "run_benchmarks"]

_CHILD = r"""
import json, sys, time, resource, tempfile
import torch
from pathlib import Path
from monai_apps.export import build_network, example_input
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
net = build_network(args["bundle"], args["configs"])
x = example_input(args["bundle"], args["configs"], batch=args["batch"])
runtime, device = args["runtime"], args["device"]
flops = None
if runtime == "eager":
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x[:1])
    flops = counter.get_total_flops()
if runtime.startswith("eager"):
    net = net.to(device)
    x = x.to(device)
    if runtime == "eager_bf16":
        ctx = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    elif runtime == "eager_amp":
        ctx = lambda: torch.autocast("cuda", dtype=torch.float16)
    else:
        import contextlib
        ctx = contextlib.nullcontext
    def run():
        with torch.no_grad(), ctx():
            out = net(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return out
elif runtime == "torchscript":
    from monai.networks.utils import convert_to_torchscript
    ts = convert_to_torchscript(net)
    def run():
        with torch.no_grad():
            return ts(x)
elif runtime == "onnxruntime":
    import onnxruntime as ort
    from monai.networks.utils import convert_to_onnx
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    convert_to_onnx(net, inputs=[x], input_names=["image"], output_names=["pred"], filename=str(path),
                    dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}}, use_trace=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args["threads"]
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    xn = x.numpy()
    def run():
        return session.run(None, {"image": xn})
run()
times = []
for _ in range(args["repeats"]):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
best = min(times)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("BENCH " + json.dumps({"seconds_per_batch": best, "items_per_s": args["batch"] / best, "flops_per_item": flops,
                             "input_shape": list(x.shape), "peak_rss_mb": round(peak_mb)}))
"""


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n x n`` matrix product on this CPU (all torch threads)."""
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.rand(n, n).to(dt), torch.rand(n, n).to(dt)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def network_profiles(bundle: str) -> list[list[str]]:
    """Config lists to benchmark: the default ``inference`` and one per variant file that changes the network."""
    configs = BUNDLES_DIR / bundle / "configs"
    profiles = [["inference"]]
    for variant in sorted(configs.glob("*.json")):
        if variant.stem in ("inference", "train", "evaluate", "multi_gpu_train", "metadata"):
            continue
        if '"network_def"' in variant.read_text():
            profiles.append(["inference", variant.stem])
    if (configs / "cpu.json").is_file():  # the CPU profile, with the network it is documented with
        network = [p[1] for p in profiles[1:] if p[1] != "cpu"][:1] if "cpu" not in [p[-1] for p in profiles] else []
        profiles.append(["inference", *network, "cpu"])
    return profiles


def bench_model(
    bundle: str,
    configs: Sequence[str] = ("inference",),
    runtime: str = "eager",
    batch: int = 2,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
) -> dict:
    """Time one network on one runtime in a fresh process; return throughput and the child's peak memory."""
    import torch

    args = {
        "bundle": bundle,
        "configs": list(configs),
        "runtime": runtime,
        "batch": batch,
        "repeats": repeats,
        "device": device,
        "threads": threads or torch.get_num_threads(),
    }
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {**args, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return {**args, **json.loads(proc.stdout.split("BENCH ")[-1])}


def _runtimes(device: str) -> list[str]:
    if device == "cuda":
        return ["eager", "eager_amp"]
    runtimes = ["eager", "torchscript", "onnxruntime"]
    import torch

    cpu = getattr(torch, "cpu", None)
    if any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")):
        runtimes.insert(1, "eager_bf16")
    return runtimes


def _data_side(out: Path) -> dict:
    """Seconds per 512 x 512 x 200 CT: preprocessing and organ-patch extraction; training s/iteration, cached or not."""
    from .bundles import run_bundle
    from .data.cohort import generate_cohort
    from .data.synthetic_abdomen import generate_abdominal_ct
    from .data.writers import write_nifti

    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ct = generate_abdominal_ct(seed=42, shape=(512, 512, 200))
        volume = write_nifti(Path(tmp) / "ct.nii.gz", ct.image, ct.affine)
        from monai.bundle import ConfigParser

        from .bundles import config_files

        root = BUNDLES_DIR / "liver_tumor_ct_segmentation"
        with bundle_imports(root):
            parser = ConfigParser()
            parser.read_config(config_files(root, ["inference", "unet", "cpu"]))
            parser["bundle_root"] = str(root)
            preprocessing = parser.get_parsed_content("preprocessing")
            t0 = time.perf_counter()
            preprocessing({"image": str(volume)})
            figures["liver_preprocessing_s_per_512x512x200"] = round(time.perf_counter() - t0, 2)
        data = generate_cohort(Path(tmp) / "Task03_Liver", n_cases=6, shape=(512, 512, 64), progress=False)
        plain = {
            "train#dataset": {"_target_": "Dataset", "data": "@train#datalist", "transform": "@train#preprocessing"},
            "validate#dataset": {
                "_target_": "Dataset",
                "data": "@validate#datalist",
                "transform": "@validate#preprocessing",
            },
        }
        for name, overrides in (("cached", {}), ("uncached", plain)):
            workflow = run_bundle(
                "liver_tumor_ct_segmentation",
                ["train", "unet", "cpu"],
                dataset_dir=str(data),
                max_epochs=2,
                val_interval=100,
                ckpt_dir=str(Path(tmp) / name),
                output_dir=str(Path(tmp) / name),
                **overrides,
            )
            trainer = workflow.parser.get_parsed_content("train#trainer")
            per_iter = trainer.state.times["COMPLETED"] / trainer.state.iteration
            figures[f"liver_train_s_per_iteration_{name}"] = round(per_iter, 3)
    from .data.organ_patches import bench_organ_patches

    patches = bench_organ_patches(repeats=1)
    figures["organ_patch_extraction_s_per_512x512x200"] = patches["extract_s"]
    figures["organ_patch_extraction_patches_per_s"] = patches["extract_patches_per_s"]
    figures["organ_patch_preparation_end_to_end_s_per_512x512x200"] = patches["end_to_end_s"]
    return figures


def run_benchmarks(
    out: str = "runs/bench",
    bundles: Sequence[str] | None = None,
    repeats: int = 5,
    batch: int = 2,
    data_side: bool = True,
) -> dict:
    """Benchmark every bundle's network on every runtime; write ``bench.csv``, ``bench.json``, ``bench.png``.

    Args:
        out: output folder.
        bundles: bundle names (default all).
        repeats: timed forward passes per measurement (best is kept).
        batch: inputs per forward pass.
        data_side: also time preprocessing, organ-patch extraction and training iterations (minutes).
    """
    import torch

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    machine = {
        "cpu_threads": torch.get_num_threads(),
        "matmul_gflops_fp32": round(matmul_gflops(), 1),
        "matmul_gflops_bf16": round(matmul_gflops(dtype="bfloat16"), 1),
    }
    rows = []
    for bundle in bundles or list_bundles():
        for configs in network_profiles(bundle):
            for device in devices:
                for runtime in _runtimes(device):
                    row = bench_model(bundle, configs, runtime, batch=batch, repeats=repeats, device=device)
                    row["profile"] = "+".join(configs)
                    rows.append(row)
                    print(
                        json.dumps(
                            {
                                k: row.get(k)
                                for k in (
                                    "bundle",
                                    "profile",
                                    "device",
                                    "runtime",
                                    "items_per_s",
                                    "peak_rss_mb",
                                    "error",
                                )
                            }
                        )
                    )
    for row in rows:  # FLOPs are counted once per network (eager row) and shared by its other runtimes
        eager = next(
            (
                r
                for r in rows
                if r["bundle"] == row["bundle"]
                and r["profile"] == row["profile"]
                and r["runtime"] == "eager"
                and r.get("flops_per_item")
            ),
            None,
        )
        if eager and "items_per_s" in row:
            gflops = eager["flops_per_item"] * row["items_per_s"] / 1e9
            peak = machine["matmul_gflops_bf16" if row["runtime"] == "eager_bf16" else "matmul_gflops_fp32"]
            row["gflop_per_item"] = round(eager["flops_per_item"] / 1e9, 2)
            row["achieved_gflops"] = round(gflops, 1)
            row["share_of_matmul_peak"] = round(gflops / peak, 3) if row["device"] == "cpu" else None
    data_figures = _data_side(out_dir) if data_side else {}
    fields = [
        "bundle",
        "profile",
        "device",
        "runtime",
        "batch",
        "input_shape",
        "items_per_s",
        "seconds_per_batch",
        "peak_rss_mb",
        "gflop_per_item",
        "achieved_gflops",
        "share_of_matmul_peak",
        "error",
    ]
    with open(out_dir / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = {"machine": machine, "models": rows, "data": data_figures}
    (out_dir / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    _chart(rows, out_dir / "bench.png")
    print(json.dumps({"machine": machine, "data": data_figures}))
    return summary


def _chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "items_per_s" in r]
    labels = sorted({f"{r['bundle']}\n{r['profile']}" for r in ok})
    runtimes = sorted({f"{r['device']}:{r['runtime']}" for r in ok})
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(labels)), 5))
    width = 0.8 / max(len(runtimes), 1)
    for i, runtime in enumerate(runtimes):
        values = []
        for label in labels:
            match = [
                r
                for r in ok
                if f"{r['bundle']}\n{r['profile']}" == label and f"{r['device']}:{r['runtime']}" == runtime
            ]
            values.append(match[0]["items_per_s"] if match else 0)
        ax.bar([j + i * width for j in range(len(labels))], values, width, label=runtime)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("network inputs per second (log)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Inference throughput per bundle network and runtime")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
