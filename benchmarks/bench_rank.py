"""Speed and accuracy of `audiorank.rankme` against the SVDs a user would otherwise call.

For each case, measured in this run on this machine:
- `audiorank.rankme(Z)` (method="auto": float64 Gram + eigvalsh, SVD fallback when inaccurate),
- `torch.linalg.svdvals(Z)` on the float32 input, as a user would call it,
- `numpy.linalg.svd(Z, compute_uv=False)` on the float32 input (CPU cases only),
each with its best and median wall time over interleaved rounds, the speed-up of rankme over it
(best-of-rounds ratio, the figure the project quotes, and the median of per-round ratios), and the
relative error of the RankMe it yields against a float64 SVD reference (numpy float64 on CPU, torch
float64 on GPU).

Usage:  python benchmarks/bench_rank.py [--repeats 3] [--quick] [--no-gpu] [--skip-large]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from audiorank import rank
from audiorank.synthetic import embeddings_with_spectrum, power_law_spectrum

EPS = 1e-7


def rankme_of_sigma(sigma) -> float:
    """RankMe from singular values (Garrido et al. 2023), used for every baseline alike."""
    s = np.asarray(sigma, dtype=np.float64)
    p = s / s.sum() + EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_rounds(fns: dict[str, Callable[[], object]], repeats: dict[str, int], device: str):
    """Interleaved timing: in each round every implementation runs once, in turn, so that drift in
    the machine's speed (a shared VM) hits all of them alike. After one warm-up round, returns
    {name: (times per round, last result)}; an implementation with fewer repeats sits out later
    rounds."""
    results = {name: ([], None) for name in fns}
    for name, fn in fns.items():  # warm-up round
        if repeats[name] > 1:
            fn()
    for r in range(max(repeats.values())):
        for name, fn in fns.items():
            if r < repeats[name]:
                sync(device)
                start = time.perf_counter()
                out = fn()
                sync(device)
                results[name] = (results[name][0] + [time.perf_counter() - start], out)
    return results


def paired_speedup(times: list[float], ours: list[float]) -> float:
    """Median over rounds of (baseline time / rankme time in the same round)."""
    return statistics.median(t / o for t, o in zip(times, ours))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_environment() -> None:
    print(f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"CPU: {cpu_model()}; os.cpu_count()={os.cpu_count()}, "
          f"torch.get_num_threads()={torch.get_num_threads()}")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"GPU: {gpu}")
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")


def gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)


def power_law(n: int, d: int, alpha: float = 1.0) -> np.ndarray:
    return embeddings_with_spectrum(n, power_law_spectrum(d, alpha), seed=1, dtype=np.float32)


ROW = "{:<30} {:<34} {:>7} {:>9} {:>10} {:>10} {:>9}"


def report(case: str, ours: list[float], rows: list[tuple[str, list[float], float]]) -> None:
    """One line per implementation: best and median s, best-of ratio, median paired ratio, error."""
    for name, times, err in rows:
        print(ROW.format(case, name, f"{min(times):.3f}", f"{statistics.median(times):.3f}",
                         f"{min(times) / min(ours):.2f}x", f"{paired_speedup(times, ours):.2f}x",
                         f"{err:.1e}"))


def bench_cpu_case(case: str, Z: np.ndarray, repeats: int) -> None:
    n = Z.shape[0]
    # numpy's SVD of the large matrix is the slow baseline: measured once, without warm-up.
    once = n > 100_000
    ref = rankme_of_sigma(np.linalg.svd(Z.astype(np.float64), compute_uv=False))
    Zt = torch.from_numpy(Z)
    path = rank.singular_values(Zt, return_info=True).method[0]
    runs = timed_rounds(
        {"ours": lambda: rank.rankme(Zt), "torch": lambda: torch.linalg.svdvals(Zt),
         "numpy": lambda: np.linalg.svd(Z, compute_uv=False)},
        {"ours": repeats, "torch": repeats, "numpy": 1 if once else repeats}, "cpu")
    (t_ours, ours), (t_torch, sig_t), (t_np, sig_np) = runs["ours"], runs["torch"], runs["numpy"]
    rows = [
        (f"audiorank.rankme [{path}]", t_ours, abs(ours - ref) / ref),
        ("torch.linalg.svdvals (f32)", t_torch, abs(rankme_of_sigma(sig_t) - ref) / ref),
        (f"numpy.linalg.svd (f32){' (1 run)' if once else ''}", t_np,
         abs(rankme_of_sigma(sig_np) - ref) / ref),
    ]
    report(case, t_ours, rows)


def bench_gpu_case(case: str, Z: torch.Tensor, repeats: int) -> None:
    ref = rankme_of_sigma(torch.linalg.svdvals(Z.double()).cpu())
    path = rank.singular_values(Z, return_info=True).method[0]
    runs = timed_rounds({"ours": lambda: rank.rankme(Z), "torch": lambda: torch.linalg.svdvals(Z)},
                        {"ours": repeats, "torch": repeats}, "cuda")
    (t_ours, ours), (t_torch, sig) = runs["ours"], runs["torch"]
    rows = [
        (f"audiorank.rankme [{path}]", t_ours, abs(ours - ref) / ref),
        ("torch.linalg.svdvals (f32)", t_torch, abs(rankme_of_sigma(sig.cpu()) - ref) / ref),
    ]
    report(case, t_ours, rows)


def bench_gpu_layers(case: str, Z: torch.Tensor, repeats: int) -> None:
    """(L, N, D) in one batched call vs a Python loop of svdvals per layer."""
    ref = np.array([rankme_of_sigma(torch.linalg.svdvals(z.double()).cpu()) for z in Z])
    paths = "/".join(sorted(set(rank.singular_values(Z, return_info=True).method)))
    runs = timed_rounds({"ours": lambda: rank.rankme(Z), "loop": lambda: [torch.linalg.svdvals(z) for z in Z]},
                        {"ours": repeats, "loop": repeats}, "cuda")
    (t_ours, ours), (t_loop, sigs) = runs["ours"], runs["loop"]
    loop = np.array([rankme_of_sigma(s.cpu()) for s in sigs])
    rows = [
        (f"audiorank.rankme batched [{paths}]", t_ours, float(np.max(np.abs(ours - ref) / ref))),
        ("loop of torch.linalg.svdvals (f32)", t_loop, float(np.max(np.abs(loop - ref) / ref))),
    ]
    report(case, t_ours, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA cases")
    parser.add_argument("--skip-large", action="store_true", help="skip the 262,144-row CPU case")
    args = parser.parse_args()

    print_environment()
    d = 768
    cpu_sizes = [4_096, 16_384] if args.quick else [25_600, 262_144]
    if args.skip_large:
        cpu_sizes = cpu_sizes[:1]
    print(f"\nrepeats={args.repeats} interleaved rounds after one warm-up round; D={d}; float32 input;\n"
          "x best = best baseline time / best rankme time (best of the rounds); x paired = median over\n"
          "rounds of baseline time / rankme time in the same round; rel. err = |RankMe - ref| / ref")
    print(ROW.format("case", "implementation", "best s", "median s", "x best", "x paired", "rel. err"))
    for n in cpu_sizes:
        bench_cpu_case(f"cpu {n}x{d} gaussian", gaussian(n, d), args.repeats)
    bench_cpu_case(f"cpu {cpu_sizes[0]}x{d} power-law a=1", power_law(cpu_sizes[0], d),
                   args.repeats)

    if torch.cuda.is_available() and not args.no_gpu:
        n_big, n_layer = (65_536, 4_096) if args.quick else (1_048_576, 25_600)
        Z = torch.randn(n_big, d, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
        bench_gpu_case(f"cuda {n_big}x{d} gaussian", Z, args.repeats)
        del Z
        layers = torch.randn(13, n_layer, d, device="cuda",
                             generator=torch.Generator("cuda").manual_seed(1))
        bench_gpu_layers(f"cuda 13x{n_layer}x{d} gaussian", layers, args.repeats)
    else:
        print("(no CUDA device: GPU cases skipped)")
    print(f"\nload average at end (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
