"""Quality sweep: presets x sparsity x seeds on the embedded digits data with the small CNN, or (``--task text``)
on the embedded stdlib_text language-modelling data with tiny_lm.

Runs ONE Hydra sweep through the real CLI (``prunecli prune -m ...``), reads every job's ``summary.json`` and
prints dense vs pruned accuracy, mean and spread over seeds, per preset and sparsity, then the two published
qualitative checks: gradual (agp) vs one-shot (level) at >= 90%, and lottery-ticket rewind (``rounds.rewind=init``)
vs random re-initialisation of the same masks (``rounds.rewind=random``).

    python scripts/bench_quality.py                                  # the full grid (long: ~150 runs)
    python scripts/bench_quality.py --presets level agp --sparsities 0.9 0.99 --seeds 0 1

Each extra "variant" is a preset plus overrides, named ``label=preset[,override...]``.

``--task text`` follows the papers' setting for language models, pruning while fine-tuning a trained model:
per seed, one dense run trains tiny_lm (``experiment=stdlib_lm``, ``--pretrain-epochs``), then every preset
fine-tunes those weights (``model.weights=``) while pruning, and ``finetune`` fine-tunes them dense for the same
steps (the control: how much of a change is fine-tuning alone). Metric: validation perplexity (lower is better).

    python scripts/bench_quality.py --task text --seeds 0 1 2
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
TEXT_PRESETS = ["level", "agp", "movement", "snip_momentum"]
TEXT_VARIANTS = [f"{p}_4x1@0.8={p},pruner.target=4x1" for p in TEXT_PRESETS] + ["finetune@0=level"]
# tiny_lm on 64-byte sequences: a dense run per seed, then short pruning fine-tunes (minutes each on 2 cores)
TEXT_EXTRA = ["experiment=stdlib_lm", "dataset.seq_len=64", "trainer.epochs=2"]
METRICS = {"digits": ("accuracy", "acc %", 100.0), "text": ("perplexity", "ppl", 1.0)}


def run_sweep(variants: dict[str, list[str]], sparsities: list[float], seeds: list[int], extra: list[str],
              out: Path, metric: str = "accuracy") -> list[dict]:
    """One ``prunecli prune -m`` over the seeds per variant and sparsity, so one refused sparsity (e.g. above
    what a pattern can reach) costs only its own cell; refusals are printed and left out of the table.
    A variant label ``name@s`` runs at sparsity ``s`` only."""
    rows = []
    for label, (preset, *overrides) in variants.items():
        name, _, only = label.partition("@")
        for sparsity in [float(only)] if only else sparsities:
            sweep_dir = out / f"{name}-{sparsity}-{'_'.join(map(str, seeds))}"
            cmd = [sys.executable, "-m", "prunecli.cli", "prune", "-m", f"pruner={preset}", *overrides,
                   f"sparsity={sparsity}", f"seed={','.join(map(str, seeds))}", "trainer.progress=false",
                   f"hydra.sweep.dir={sweep_dir}", *extra]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                reason = next((line for line in done.stderr.splitlines() if line.startswith("error:")), "failed")
                print(f"{label} at {sparsity:g}: {reason}", file=sys.stderr)
                continue
            print(f"{name} at {sparsity:g}: {len(seeds)} runs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            for summary in sweep_dir.glob("*/summary.json"):
                job = yaml.safe_load((summary.parent / ".hydra" / "overrides.yaml").read_text())
                values = dict(o.split("=", 1) for o in job)
                data = json.loads(summary.read_text())
                rows.append({"variant": name, "sparsity": sparsity, "seed": int(values["seed"]),
                             "dense": data[f"dense_{metric}"], "metric": data[metric], "reached": data["sparsity"],
                             "run": str(summary.parent)})
    return rows


def text_rows(variants: dict[str, list[str]], sparsities: list[float], seeds: list[int], extra: list[str],
              out: Path, pretrain_epochs: int, dense: Path | None = None) -> list[dict]:
    """Per seed: a dense tiny_lm run, then every variant fine-tuning its weights while pruning; with ``dense`` (a
    run dir), every seed starts from that one run's weights (the seeds then vary fine-tuning and pruning only)."""
    base = TEXT_EXTRA + extra
    if dense is not None:
        weights = dense / "checkpoint" / "last" / "model.safetensors"
        return run_sweep(variants, sparsities, seeds, [*base, f"model.weights={weights}"], out, "perplexity")
    rows = []
    for seed in seeds:
        dense = run_sweep({"dense@0": ["level", "trainer.epochs=0", f"trainer.pretrain_epochs={pretrain_epochs}"]},
                          [0.0], [seed], base, out, "perplexity")
        if not dense:
            raise SystemExit(f"the dense run of seed {seed} failed")
        weights = Path(dense[0]["run"]) / "checkpoint" / "last" / "model.safetensors"
        rows += run_sweep(variants, sparsities, [seed], [*base, f"model.weights={weights}"], out, "perplexity")
    return rows


SCALE = 100.0  # accuracy in percent; perplexity as is (set by main)


def stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{SCALE * mean:.2f} ± {SCALE * spread:.2f}"


def table(rows: list[dict], unit: str = "acc %") -> dict[tuple[str, float], list[float]]:
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["variant"], row["sparsity"]].append(row)
    print(f"\n| preset | sparsity | reached | dense {unit} | pruned {unit} | seeds |\n|---|---|---|---|---|---|")
    acc = {}
    for (variant, sparsity), group in sorted(groups.items()):
        acc[variant, sparsity] = [r["metric"] for r in group]
        print(f"| {variant} | {sparsity:g} | {statistics.fmean(r['reached'] for r in group):.4f} | "
              f"{stats([r['dense'] for r in group])} | {stats(acc[variant, sparsity])} | {len(group)} |")
    return acc


def compare(acc: dict, a: str, b: str, min_sparsity: float, higher_is_better: bool = True) -> None:
    for (variant, sparsity), values in sorted(acc.items()):
        if variant == a and sparsity >= min_sparsity and (b, sparsity) in acc:
            diff = statistics.fmean(values) - statistics.fmean(acc[b, sparsity])
            diff = diff if higher_is_better else -diff
            verdict = "better" if diff > 0 else "worse" if diff < 0 else "equal"
            print(f"- at {sparsity:g}: {a} {stats(values)} vs {b} {stats(acc[b, sparsity])}: {a} {verdict} by "
                  f"{SCALE * abs(diff):.2f} {'points' if SCALE == 100 else 'perplexity'}")


def main() -> None:
    global SCALE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["digits", "text"], default="digits")
    parser.add_argument("--presets", nargs="*", help=f"default: {DEFAULT_PRESETS} (text: {TEXT_PRESETS})")
    parser.add_argument("--variants", nargs="*", help="label[@sparsity]=preset[,override...]")
    parser.add_argument("--sparsities", nargs="*", type=float, help="default: 0.5 0.75 0.9 0.98 0.99 (text: 0.5 "
                        "0.75 0.9)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=12, help="text: epochs of each seed's dense run")
    parser.add_argument("--dense", type=Path, help="text: the run dir of a dense run every seed starts from")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for every run, e.g. trainer.epochs=6")
    args = parser.parse_args()
    text = args.task == "text"
    presets = args.presets if args.presets is not None else TEXT_PRESETS if text else DEFAULT_PRESETS
    specs = args.variants if args.variants is not None else TEXT_VARIANTS if text else [LT_RANDOM]
    sparsities = args.sparsities or ([0.5, 0.75, 0.9] if text else [0.5, 0.75, 0.9, 0.98, 0.99])
    variants = {p: [p] for p in presets}
    for spec in specs:
        label, rest = spec.split("=", 1)
        variants[label] = rest.split(",")
    metric, unit, SCALE = METRICS[args.task]
    with tempfile.TemporaryDirectory() as tmp:
        if text:
            rows = text_rows(variants, sparsities, args.seeds, args.extra, Path(tmp), args.pretrain_epochs, args.dense)
        else:
            rows = run_sweep(variants, sparsities, args.seeds, args.extra, Path(tmp))
    what = f"stdlib_text, tiny_lm ({' '.join(TEXT_EXTRA)})" if text else "digits, cnn"
    print(f"# {what}, {time.strftime('%Y-%m-%d')}, seeds {args.seeds}, extra overrides {args.extra or 'none'}")
    acc = table(rows, unit)
    print("\nGradual vs one-shot:")
    compare(acc, "agp", "level", 0.9, higher_is_better=not text)
    if text:
        print("\nMovement vs magnitude (agp schedule both):")
        compare(acc, "movement", "agp", 0.0, higher_is_better=False)
        return
    print("\nLottery-ticket rewind vs random re-initialisation of the same masks:")
    compare(acc, "lottery_ticket", "lottery_ticket_random", 0.0)


if __name__ == "__main__":
    main()
