"""Check and time calibsynth's pruning kernels (Triton vs the torch references) and 2:4 sparse matmuls.

On a CUDA machine, at the layer shapes of LLaMA-3-8B and LLaMA-3-70B in bf16 and fp32:
    python benchmarks/gpu_kernels.py --out results/gpu_kernels.json
Every kernel is first checked bit for bit against its torch reference on fresh random data, then timed
with CUDA events (median of --reps runs after warm-up). Bandwidth is reported against a measured
device-to-device copy of the same weight. Without a GPU, `--small` runs the same script at toy shapes on
Triton's CPU interpreter (TRITON_INTERPRET=1 is set here), which checks the code path, not the speed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

if "--small" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch
import torch.nn.functional as F

from calibsynth import kernels as K

SHAPES = {"llama3-8b": [(4096, 4096), (14336, 4096), (4096, 14336), (1024, 4096)],
          "llama3-70b": [(8192, 8192), (28672, 8192)]}
SMALL = {"toy": [(8, 64), (4, 96)]}


def timer(fn, reps, cuda):
    "Median seconds of `fn()` over `reps` runs after two warm-up runs."
    fn(), fn()
    times = []
    for _ in range(reps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_shape(rows, cols, dtype, device, reps):
    cuda = device.type == "cuda"
    g = torch.Generator(device=device).manual_seed(rows * 31 + cols)
    w = torch.randn(rows, cols, device=device, generator=g).to(dtype)
    norms = torch.rand(cols, device=device, generator=g) * 10
    wbytes, mbytes = w.numel() * w.element_size(), w.numel()  # masks are one byte per weight
    out = dict(rows=rows, cols=cols, dtype=str(dtype).replace("torch.", ""))
    dst = torch.empty_like(w)
    t_copy = timer(lambda: dst.copy_(w), reps, cuda)
    out["copy_GBps"] = 2 * wbytes / t_copy / 1e9

    checks = {
        "row_select_50": (lambda b: K.row_prune_mask(w, 0.5, backend=b)),
        "nm_2_4": (lambda b: K.nm_mask(w, 2, 4, backend=b)),
        "wanda_50": (lambda b: K.wanda_mask(w, norms, 0.5, None, backend=b)),
        "wanda_2_4": (lambda b: K.wanda_mask(w, norms, 0.5, (2, 4), backend=b)),
    }
    out["bit_identical"] = {name: bool(torch.equal(f("triton"), f("torch"))) for name, f in checks.items()}
    scale = norms.sqrt()
    out["outlier_ratio_abs_diff"] = abs(K.outlier_ratio([w], [scale], 5.0, "triton") - K.outlier_ratio([w], [scale], 5.0, "torch"))

    k = cols // 2
    s32 = w.float()
    t = {name: timer(lambda f=f: f("triton"), reps, cuda) for name, f in checks.items()}
    t_ref = {name: timer(lambda f=f: f("torch"), reps, cuda) for name, f in checks.items()}
    t["outlier_ratio"] = timer(lambda: K.outlier_ratio([w], [scale], 5.0, "triton"), reps, cuda)
    t_ref["outlier_ratio"] = timer(lambda: K.outlier_ratio([w], [scale], 5.0, "torch"), reps, cuda)
    out["torch_sort_s"] = timer(lambda: torch.sort(s32, dim=1), reps, cuda)
    out["torch_kthvalue_s"] = timer(lambda: torch.kthvalue(s32, k, dim=1), reps, cuda) if cuda or dtype == torch.float32 else None
    for name in t:
        out[f"{name}_triton_s"] = t[name]
        out[f"{name}_torch_s"] = t_ref[name]
        out[f"{name}_speedup"] = t_ref[name] / t[name]
        out[f"{name}_GBps"] = (wbytes + mbytes) / t[name] / 1e9
        out[f"{name}_of_copy_bw"] = out[f"{name}_GBps"] / out["copy_GBps"]
    out["row_select_vs_sort"] = out["torch_sort_s"] / t["row_select_50"]
    if out["torch_kthvalue_s"]:
        out["row_select_vs_kthvalue"] = out["torch_kthvalue_s"] / t["row_select_50"]
    return out


def bench_sparse24(rows, cols, device, reps, tokens=(16, 4096)):
    "Dense vs torch's semi-structured (2:4) sparse matmul for a 2:4-pruned bf16 weight."
    from torch.sparse import to_sparse_semi_structured

    w = torch.randn(rows, cols, device=device, dtype=torch.bfloat16)
    w = w * K.nm_mask(w.abs(), 2, 4)
    res = dict(rows=rows, cols=cols)
    try:
        ws = to_sparse_semi_structured(w)
    except Exception as e:  # report what torch offers on this machine
        res["error"] = f"{type(e).__name__}: {e}"
        return res
    for n in tokens:
        x = torch.randn(n, cols, device=device, dtype=torch.bfloat16)
        try:
            ys, yd = F.linear(x, ws), F.linear(x, w)
            res[f"tokens_{n}_max_abs_diff"] = (ys.float() - yd.float()).abs().max().item()
            res[f"tokens_{n}_allclose_bf16"] = bool(torch.allclose(ys.float(), yd.float(), rtol=2e-2, atol=2e-2 * yd.float().abs().max().item()))
            td, ts = timer(lambda: F.linear(x, w), reps, True), timer(lambda: F.linear(x, ws), reps, True)
            res[f"tokens_{n}_dense_s"], res[f"tokens_{n}_sparse_s"], res[f"tokens_{n}_speedup"] = td, ts, td / ts
        except Exception as e:
            res[f"tokens_{n}_error"] = f"{type(e).__name__}: {e}"
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/gpu_kernels.json")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--small", action="store_true", help="toy shapes on Triton's CPU interpreter")
    a = p.parse_args()
    cuda = torch.cuda.is_available() and not a.small
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda and not a.small:
        sys.exit("no CUDA device: run with --small to check the kernels on Triton's CPU interpreter")
    import triton

    report = dict(device=torch.cuda.get_device_name() if cuda else f"cpu (Triton interpreter): {platform.processor()}",
                  torch=torch.__version__, triton=triton.__version__, reps=a.reps, kernels=[], sparse24=[])
    for model, shapes in (SMALL if a.small else SHAPES).items():
        for rows, cols in shapes:
            for dtype in (torch.bfloat16, torch.float32):
                r = bench_shape(rows, cols, dtype, device, 1 if a.small else a.reps) | dict(model=model)
                report["kernels"].append(r)
                print(f"{model:10} {rows:>6}x{cols:<6} {r['dtype']:8} copy {r['copy_GBps']:7.1f} GB/s | "
                      f"wanda 2:4 {r['wanda_2_4_triton_s'] * 1e3:8.3f} ms {r['wanda_2_4_of_copy_bw']:5.0%} of copy, "
                      f"x{r['wanda_2_4_speedup']:.1f} | row select {r['row_select_50_triton_s'] * 1e3:8.3f} ms, "
                      f"x{r['row_select_vs_sort']:.1f} vs sort | identical: {all(r['bit_identical'].values())}",
                      flush=True)
            if cuda:
                s = bench_sparse24(rows, cols, device, a.reps) | dict(model=model)
                report["sparse24"].append(s)
                print(f"   2:4 sparse matmul: {json.dumps(s)}", flush=True)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(a.out + ".tmp", a.out)
    print(f"wrote {a.out}")
    if not all(all(r["bit_identical"].values()) for r in report["kernels"]):
        sys.exit("some kernel disagrees with its torch reference")


if __name__ == "__main__":
    main()
