"""Pretraining throughput: steps per second and model FLOP utilisation (MFU) for each size preset.

MFU = FLOPs per step (counted by torch.utils.flop_counter on one real forward+backward step)
      x steps per second / peak FLOP/s.
Peak: on CPU a large float32 matmul measured in this same run (the models train in fp32 there);
on GPU a table of dense bf16 tensor-core peaks by device name (the models train under bf16
autocast there), or --peak-flops. Objectives: MAE for ViT presets, BYOL for CNN and Conformer.

    python benchmarks/bench_train.py --quick            # small presets, a few steps, CPU (+ GPU)
    python benchmarks/bench_train.py --device cuda      # every preset on the GPU
"""

from __future__ import annotations

import argparse
import time

import torch

from audiorank.models import PRESETS
from audiorank.pretrain import PretrainConfig, pretrain

# dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets
GPU_BF16_PEAK = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
]

QUICK = ["vit-nano", "vit-tiny", "vit-mini", "cnn-nano", "cnn-tiny", "conformer-nano", "conformer-tiny"]


def cpu_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of float32 matmul throughput on this CPU with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def gpu_peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device)
    for key, peak in GPU_BF16_PEAK:
        if key.lower() in name.lower():
            return peak
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small presets, short clips, few steps")
    parser.add_argument("--device", default="all", help="'cpu', 'cuda' or 'all' (CPU, plus CUDA when present)")
    parser.add_argument("--presets", nargs="*", help="preset names (default: all; --quick: the small ones)")
    parser.add_argument("--steps", type=int, help="timed steps (after one counted step)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--frames", type=int, help="clip length in 10 ms frames")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads); default: torch's")
    parser.add_argument("--peak-flops", type=float, help="override the peak FLOP/s used for MFU")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    presets = args.presets or (QUICK if args.quick else list(PRESETS))
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; available: {', '.join(PRESETS)}")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]

    for dev in devices:
        device = torch.device(dev)
        on_gpu = device.type == "cuda"
        steps = args.steps or (5 if args.quick else 20)
        batch = args.batch_size or (8 if args.quick and not on_gpu else 32 if not on_gpu else 64)
        frames = args.frames or (128 if args.quick else 1024 if on_gpu else 512)
        if args.peak_flops:
            peak, source = args.peak_flops, "--peak-flops"
        elif on_gpu:
            peak, source = gpu_peak_flops(device), f"bf16 table, {torch.cuda.get_device_name(device)}"
        else:
            peak, source = cpu_peak_flops(), f"fp32 matmul measured now, {torch.get_num_threads()} threads"
        precision = "bf16 autocast" if on_gpu else "fp32"
        peak_txt = f"{peak / 1e12:.3f} TFLOP/s" if peak else "unknown (pass --peak-flops)"
        print(f"\n== {dev} ({precision}); peak {peak_txt} [{source}]; batch {batch} x {frames} frames, {steps} timed steps")
        print(f"{'preset':<16}{'objective':<10}{'params':>12}{'GFLOP/step':>12}{'steps/s':>10}{'TFLOP/s':>10}{'MFU':>8}")
        data = torch.randn(max(4 * batch, 64), 64, frames, generator=torch.Generator().manual_seed(0)) * 2 - 5
        for name in presets:
            objective = "mae" if PRESETS[name].arch == "vit" else "byol"
            config = PretrainConfig(
                objective=objective, encoder=name, steps=steps + 1, batch_size=batch, warmup_steps=1,
                device=dev, dtype="auto",
            )
            try:
                result = pretrain(config, data, progress=False)
            except torch.OutOfMemoryError:
                print(f"{name:<16}{objective:<10}{'out of memory':>40}")
                continue
            achieved = result.flops_per_step * result.steps_per_second
            mfu = f"{100 * achieved / peak:.1f}%" if peak else "n/a"
            print(
                f"{name:<16}{objective:<10}{result.params:>12,}{result.flops_per_step / 1e9:>12.2f}"
                f"{result.steps_per_second:>10.2f}{achieved / 1e12:>10.3f}{mfu:>8}"
                + ("" if result.status == "ok" else f"  ({result.status})")
            )
            del result
            if on_gpu:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
