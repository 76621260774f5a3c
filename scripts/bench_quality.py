"""Quality sweep: presets x sparsity x seeds on the embedded digits data with the small CNN.

Runs ONE Hydra sweep through the real CLI (``prunecli prune -m ...``), reads every job's ``summary.json`` and
prints dense vs pruned accuracy, mean and spread over seeds, per preset and sparsity, then the two published
qualitative checks: gradual (agp) vs one-shot (level) at >= 90%, and lottery-ticket rewind (``rounds.rewind=init``)
vs random re-initialisation of the same masks (``rounds.rewind=random``).

    python scripts/bench_quality.py                                  # the full grid (long: ~150 runs)
    python scripts/bench_quality.py --presets level agp --sparsities 0.9 0.99 --seeds 0 1

Each extra "variant" is a preset plus overrides, named ``label=preset[,override...]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

DEFAULT_PRESETS = ["level", "agp", "linear", "movement", "snip_momentum", "random", "lottery_ticket"]
LT_RANDOM = "lottery_ticket_random=lottery_ticket,rounds.rewind=random"


def run_sweep(variants: dict[str, list[str]], sparsities: list[float], seeds: list[int], extra: list[str],
              out: Path) -> list[dict]:
    """One ``prunecli prune -m`` over the seeds per variant and sparsity, so one refused sparsity (e.g. above
    what a pattern can reach) costs only its own cell; refusals are printed and left out of the table."""
    rows = []
    for label, (preset, *overrides) in variants.items():
        for sparsity in sparsities:
            sweep_dir = out / f"{label}-{sparsity}"
            cmd = [sys.executable, "-m", "prunecli.cli", "prune", "-m", f"pruner={preset}", *overrides,
                   f"sparsity={sparsity}", f"seed={','.join(map(str, seeds))}", "trainer.progress=false",
                   f"hydra.sweep.dir={sweep_dir}", *extra]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                reason = next((line for line in done.stderr.splitlines() if line.startswith("error:")), "failed")
                print(f"{label} at {sparsity:g}: {reason}", file=sys.stderr)
                continue
            print(f"{label} at {sparsity:g}: {len(seeds)} runs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            for summary in sweep_dir.glob("*/summary.json"):
                job = yaml.safe_load((summary.parent / ".hydra" / "overrides.yaml").read_text())
                values = dict(o.split("=", 1) for o in job)
                data = json.loads(summary.read_text())
                rows.append({"variant": label, "sparsity": sparsity, "seed": int(values["seed"]),
                             "dense": data["dense_accuracy"], "accuracy": data["accuracy"],
                             "reached": data["sparsity"]})
    return rows


def stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * spread:.2f}"


def table(rows: list[dict]) -> dict[tuple[str, float], list[float]]:
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["variant"], row["sparsity"]].append(row)
    print("\n| preset | sparsity | reached | dense acc % | pruned acc % | seeds |\n|---|---|---|---|---|---|")
    acc = {}
    for (variant, sparsity), group in sorted(groups.items()):
        acc[variant, sparsity] = [r["accuracy"] for r in group]
        print(f"| {variant} | {sparsity:g} | {statistics.fmean(r['reached'] for r in group):.4f} | "
              f"{stats([r['dense'] for r in group])} | {stats(acc[variant, sparsity])} | {len(group)} |")
    return acc


def compare(acc: dict, a: str, b: str, min_sparsity: float) -> None:
    for (variant, sparsity), values in sorted(acc.items()):
        if variant == a and sparsity >= min_sparsity and (b, sparsity) in acc:
            diff = statistics.fmean(values) - statistics.fmean(acc[b, sparsity])
            verdict = "better" if diff > 0 else "worse" if diff < 0 else "equal"
            print(f"- at {sparsity:g}: {a} {stats(values)} vs {b} {stats(acc[b, sparsity])}: {a} {verdict} by "
                  f"{100 * abs(diff):.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=DEFAULT_PRESETS)
    parser.add_argument("--variants", nargs="*", default=[LT_RANDOM], help="label=preset[,override...]")
    parser.add_argument("--sparsities", nargs="*", type=float, default=[0.5, 0.75, 0.9, 0.98, 0.99])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run, e.g. trainer.epochs=6")
    args = parser.parse_args()
    variants = {p: [p] for p in args.presets}
    for spec in args.variants:
        label, rest = spec.split("=", 1)
        variants[label] = rest.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_sweep(variants, args.sparsities, args.seeds, args.extra, Path(tmp))
    print(f"# digits, cnn, {time.strftime('%Y-%m-%d')}, seeds {args.seeds}, extra overrides {args.extra or 'none'}")
    acc = table(rows)
    print("\nGradual vs one-shot:")
    compare(acc, "agp", "level", 0.9)
    print("\nLottery-ticket rewind vs random re-initialisation of the same masks:")
    compare(acc, "lottery_ticket", "lottery_ticket_random", 0.0)


if __name__ == "__main__":
    main()
