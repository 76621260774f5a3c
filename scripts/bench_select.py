"""Benchmark exact global selection: naive ``torch.cat`` + ``torch.kthvalue`` versus ``select_lowest``.

    python scripts/bench_select.py                      # 24 x (2048 x 2048) float32 scores, 90% selected
    python scripts/bench_select.py --tensors 8 --repeats 3 --threads 1

Time: both methods run side by side in this process on the same scores, one warm-up each, then ``repeats``
interleaved runs; the median is reported. Memory: each method also runs once in a fresh child process, which
reports how far its peak RSS (``VmHWM``) rose above its RSS once the scores existed, minus the returned bool masks
(one byte per score), per score. Both methods must agree: ``select_lowest`` selects exactly the budget, the
naive mask ``s <= kthvalue`` may take extra ties at the threshold, and the two are identical everywhere else.

Importable: ``bench_global_selection(...)`` returns the numbers as a dict (used by ``scripts/bench_core.py``).

On a 2-core machine shared with other busy processes, every multi-threaded torch op can stall for a scheduler
time slice (~8 ms here), which hurts the many per-tensor ops of ``select_lowest`` far more than the naive path's
few large ones; compare with ``--threads 1`` and mind the load average when reading the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prunecli.allocation import select_lowest  # noqa: E402


def make_scores(n_tensors: int, shape: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    """Magnitude-like float32 scores (``|N(0, 1)|``), reproducible from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).abs_() for _ in range(n_tensors)]


def naive_select(scores: list[torch.Tensor], budget: int) -> list[torch.Tensor]:
    """The textbook path: concatenate, ``kthvalue``, compare (may take extra ties at the threshold)."""
    flat = torch.cat([s.reshape(-1) for s in scores])
    theta = torch.kthvalue(flat, budget).values
    del flat
    return [s <= theta for s in scores]


METHODS = {"naive": naive_select, "select_lowest": select_lowest}


def _status_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak RSS of this process image) from ``/proc/self/status``, in bytes."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak() -> None:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); without it the peak since exec is used."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _child(method: str, n_tensors: int, shape: tuple[int, ...], sparsity: float) -> None:
    """Runs in a fresh process: print the peak RSS growth of one call of ``method``, masks excluded."""
    scores = make_scores(n_tensors, shape)
    n = sum(s.numel() for s in scores)
    _reset_peak()
    base = _status_bytes("VmRSS")
    masks = METHODS[method](scores, round(sparsity * n))
    # Not getrusage's ru_maxrss: it keeps the parent's peak across fork + exec.
    peak = _status_bytes("VmHWM")
    mask_bytes = sum(m.numel() * m.element_size() for m in masks)
    print(json.dumps({"extra_bytes_per_param": (peak - base - mask_bytes) / n}))


def _peak_extra(method: str, n_tensors: int, shape: tuple[int, ...], sparsity: float) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    args = [sys.executable, str(Path(__file__).resolve()), "--child", method,
            "--tensors", str(n_tensors), "--shape", *map(str, shape), "--sparsity", str(sparsity)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["extra_bytes_per_param"]


def _agreement(scores, budget, exact, naive) -> dict:
    """Exact count, naive count, and whether the two agree on every unit not tied at the threshold."""
    theta = torch.kthvalue(torch.cat([s.reshape(-1) for s in scores]), budget).values
    same_off_ties = all(torch.equal(e[s != theta], m[s != theta]) for s, e, m in zip(scores, exact, naive))
    return {
        "exact_count": sum(int(m.sum()) for m in exact),
        "naive_count": sum(int(m.sum()) for m in naive),
        "ties_at_threshold": sum(int((s == theta).sum()) for s in scores),
        "identical_off_ties": same_off_ties,
        "identical": all(torch.equal(e, m) for e, m in zip(exact, naive)),
    }


def bench_global_selection(n_tensors=24, shape=(2048, 2048), sparsity=0.9, repeats=5) -> dict:
    """Time and memory of naive selection versus ``select_lowest`` on random scores; see the module docstring.

    Returns:
        ``{"n_params", "budget", "threads", "naive_s", "select_s", "speedup", "naive_bytes_per_param",
        "select_bytes_per_param", "exact_count", "naive_count", "ties_at_threshold", "identical_off_ties",
        "identical"}``; seconds are medians, bytes per param are peak RSS growth minus the masks.
    """
    shape = tuple(shape)
    scores = make_scores(n_tensors, shape)
    n = sum(s.numel() for s in scores)
    budget = round(sparsity * n)
    results = {name: fn(scores, budget) for name, fn in METHODS.items()}  # warm-up, kept for the check
    agree = _agreement(scores, budget, results["select_lowest"], results["naive"])
    del results
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(repeats):
        for name, fn in METHODS.items():
            start = time.perf_counter()
            masks = fn(scores, budget)
            times[name].append(time.perf_counter() - start)
            del masks
    del scores
    naive_s, select_s = statistics.median(times["naive"]), statistics.median(times["select_lowest"])
    return {
        "n_params": n, "budget": budget, "threads": torch.get_num_threads(),
        "naive_s": naive_s, "select_s": select_s, "speedup": naive_s / select_s,
        "naive_bytes_per_param": _peak_extra("naive", n_tensors, shape, sparsity),
        "select_bytes_per_param": _peak_extra("select_lowest", n_tensors, shape, sparsity),
        **agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=24)
    parser.add_argument("--shape", type=int, nargs="+", default=[2048, 2048])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--child", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return _child(args.child, args.tensors, tuple(args.shape), args.sparsity)
    r = bench_global_selection(args.tensors, tuple(args.shape), args.sparsity, args.repeats)
    print(f"{args.tensors} x {tuple(args.shape)} float32 = {r['n_params']:,} scores, budget {r['budget']:,} "
          f"({args.sparsity:.0%}), {r['threads']} threads, median of {args.repeats}")
    print(f"{'method':<16}{'seconds':>10}{'speedup':>10}{'extra bytes/param':>20}")
    print(f"{'naive':<16}{r['naive_s']:>10.3f}{1.0:>10.1f}{r['naive_bytes_per_param']:>20.2f}")
    print(f"{'select_lowest':<16}{r['select_s']:>10.3f}{r['speedup']:>10.1f}{r['select_bytes_per_param']:>20.2f}")
    print(f"selected: exact {r['exact_count']:,}, naive {r['naive_count']:,} "
          f"({r['ties_at_threshold']} scores tied at the threshold); identical off the ties: "
          f"{r['identical_off_ties']}; identical: {r['identical']}")
    if r["exact_count"] != r["budget"] or not r["identical_off_ties"]:
        sys.exit("select_lowest disagrees with the naive selection")


if __name__ == "__main__":
    main()
