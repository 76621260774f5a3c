"""Benchmark of 2:4 semi-structured sparsity: dense vs ``torch.sparse.to_sparse_semi_structured`` matmuls.

``F.linear`` of a batch of inputs with a 2:4 (magnitude-pruned) weight, dense and semi-structured, on the
current CUDA device, for a few Llama-like layer shapes; median of ``--repeats`` CUDA-event timings after a
warm-up (see :func:`prunecli.export.two_four.matmul_times`). Prints a markdown table: shape, dtype, dense ms,
sparse ms, speedup, and the max abs difference of the outputs (weights scaled so outputs are of order 1).
Needs a CUDA device of compute capability >= 8.0; elsewhere it says so and exits 0.

Usage: ``python scripts/bench_semi_structured.py [--batch 4096] [--repeats 50] [--dtype float16]``
"""

from __future__ import annotations

import argparse

import torch

from prunecli.export import two_four

SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008), (8192, 8192))   # [out, in]: Llama-7B attention and MLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="rows of the input (tokens)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--dtype", choices=list(two_four.DTYPES), default="float16")
    args = parser.parse_args()
    if problem := two_four.cuda_support():
        print(f"bench_semi_structured needs a CUDA device of compute capability >= 8.0: {problem}")
        return
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, backend {two_four.backend().BACKEND}, "
          f"batch {args.batch}, {args.dtype}, median of {args.repeats}\n")
    print("| weight [out, in] | dense ms | 2:4 ms | speedup | max abs diff |")
    print("|---|---|---|---|---|")
    for out, inputs in SHAPES:
        t = two_four.matmul_times(out, inputs, args.batch, two_four.DTYPES[args.dtype], args.repeats)
        print(f"| [{out}, {inputs}] | {t['dense_ms']:.3f} | {t['sparse_ms']:.3f} | {t['speedup']:.2f}x "
              f"| {t['max_abs_diff']:.2e} |")


if __name__ == "__main__":
    main()
