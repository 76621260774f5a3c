"""Benchmark of one-shot pruning: prunecli's magnitude / Wanda / SparseGPT (and OWL) vs llmcompressor's oneshot.

Runs in an environment holding both prunecli and llmcompressor (llmcompressor is never a prunecli dependency):

    python3 -m venv /work/benchenv && /work/benchenv/bin/pip install torch==2.13.0
    /work/benchenv/bin/pip install llmcompressor torch==2.13.0
    /work/benchenv/bin/pip install -e . --no-deps   # plus prunecli's own dependencies, torch pinned
    /work/benchenv/bin/python scripts/bench_oneshot.py --work /tmp/bench_oneshot

1. A small Hugging Face ``LlamaForCausalLM`` (random init, ``--hidden`` x ``--layers``) is trained on prunecli's
   byte-level ``stdlib_text`` (once: cached in ``--work``).
2. Every pruning run is a fresh subprocess (``--worker``) that loads the model and the calibration samples
   (``--samples`` training sequences of ``--seq-len`` bytes, drawn by a seeded generator, the same for both
   tools, batches of 8), prunes every linear layer of the decoder layers (not ``lm_head``), and reports the
   pruning step's wall time, the process's peak RSS (``VmHWM``) when pruning ended, and the validation
   perplexity. A worker that only loads the model (and imports its tool) gives each tool's RSS baseline; the
   table shows the peak and the peak minus that baseline.
3. The same timing on a randomly initialised Llama-style model of ~125M parameters (hidden 768, 12 layers,
   intermediate 2048, vocab 32000) and ``--big-samples`` random calibration sequences (its perplexity is
   meaningless).

Prints a markdown table per model. ``--skip-big`` leaves step 3 out, ``--skip-small`` steps 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import prunecli  # noqa: F401  (before transformers: its model classes import torchvision on this CPU torch)

SEQ_LEN, BATCH = 128, 8
# (tool, method, target, sparsity, layer_sparsity); llmcompressor's targets: the decoder layers' Linear modules
SMALL_RUNS = ([(tool, m, t, 0.5, "uniform") for t in ("unstructured", "2:4")
               for tool, m in (("prunecli", "magnitude"), ("prunecli", "wanda"), ("llmcompressor", "wanda"),
                               ("prunecli", "sparsegpt"), ("llmcompressor", "sparsegpt"))]
              + [("prunecli", m, "unstructured", 0.7, ls) for m in ("wanda", "sparsegpt") for ls in ("uniform", "owl")])
BIG_RUNS = [(tool, m, "unstructured", 0.5, "uniform") for tool in ("prunecli", "llmcompressor")
            for m in ("wanda", "sparsegpt")]


def small_config(hidden: int, layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 32, num_key_value_heads=hidden // 64,
                       max_position_embeddings=SEQ_LEN, tie_word_embeddings=False)


def big_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=SEQ_LEN,
                       tie_word_embeddings=False)


def text(samples: int, seed: int = 0):
    """``(calibration ids [samples, SEQ_LEN], validation ids, training ids)`` from stdlib_text."""
    from prunecli.data.stdlib_text import stdlib_text

    data = stdlib_text(seq_len=SEQ_LEN, max_train_sequences=8192, max_val_sequences=256)
    order = torch.randperm(len(data.train.ids), generator=torch.Generator().manual_seed(seed))[:samples]
    return data.train.ids[order], data.val.ids, data.train.ids


def train(work: Path, hidden: int, layers: int, steps: int) -> Path:
    """The trained small Llama in ``work/dense`` (trained there first if absent)."""
    from transformers import LlamaForCausalLM

    out = work / f"dense-h{hidden}-l{layers}-s{steps}"
    if (out / "config.json").exists():
        return out
    _, val, ids = text(1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(small_config(hidden, layers))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for step in range(steps):
        batch = ids[torch.randint(0, len(ids), (32,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"train step {step}: loss {float(loss.detach()):.3f} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    model.save_pretrained(out)
    return out


def random_big(work: Path) -> Path:
    """The randomly initialised ~125M Llama, saved in ``work/random-125m`` (once)."""
    from transformers import LlamaForCausalLM

    out = work / "random-125m"
    if not (out / "config.json").exists():
        torch.manual_seed(0)
        LlamaForCausalLM(big_config()).save_pretrained(out)
    return out


@torch.no_grad()
def perplexity(model, val) -> float:
    total = 0.0
    for start in range(0, len(val), 64):
        batch = val[start:start + 64]
        total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
    return math.exp(total / len(val))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def decoder_sparsity(model) -> float:
    weights = [m.weight for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def prune_prunecli(model, calibration, method, target, sparsity, layer_sparsity) -> None:
    from prunecli.oneshot import prune_oneshot

    batches = [{"input_ids": calibration[i:i + BATCH]} for i in range(0, len(calibration), BATCH)]
    prune_oneshot(model, batches, method, sparsity=sparsity, target=target, layer_sparsity=layer_sparsity)


def prune_llmcompressor(model, calibration, method, target, sparsity, layer_sparsity) -> None:
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier
    from torch.utils.data import DataLoader

    from prunecli.data.stdlib_text import ByteTokenizer

    assert layer_sparsity == "uniform"
    cls = {"wanda": WandaPruningModifier, "sparsegpt": SparseGPTModifier}[method]
    modifier = cls(sparsity=sparsity, mask_structure="0:0" if target == "unstructured" else target,
                   targets=["LlamaDecoderLayer"])  # every Linear inside the decoder layers; lm_head stays dense
    loader = DataLoader([{"input_ids": ids} for ids in calibration], batch_size=BATCH)
    # the loader holds token ids already: the processor is never called (oneshot only needs one to be given)
    oneshot(model=model, recipe=[modifier], dataset=loader, processor=ByteTokenizer(),
            num_calibration_samples=len(calibration),
            max_seq_length=SEQ_LEN, shuffle_calibration_samples=False)


def worker(args) -> None:
    """One fresh process: load, (prune, time, measure, evaluate), print one JSON line."""
    from transformers import LlamaForCausalLM

    torch.set_num_threads(args.threads)
    tool, method, target, sparsity, layer_sparsity = args.worker
    sparsity = float(sparsity)
    if tool == "llmcompressor":
        import llmcompressor  # noqa: F401  (its imports count in its baseline)
    if args.big:
        calibration = torch.randint(0, 32000, (args.big_samples, SEQ_LEN), generator=torch.Generator().manual_seed(0))
        val = None
    else:
        calibration, val, _ = text(args.samples)
    model = LlamaForCausalLM.from_pretrained(args.model)
    with torch.no_grad():  # page every weight in (safetensors maps the file): the baseline holds the whole model
        for param in model.parameters():
            param.sum()
    model.eval()
    result = {"tool": tool, "method": method, "target": target, "sparsity": sparsity,
              "layer_sparsity": layer_sparsity, "loaded_mb": peak_rss_mb()}
    if method != "load":
        started = time.perf_counter()
        {"prunecli": prune_prunecli, "llmcompressor": prune_llmcompressor}[tool](
            model, calibration, method, target, sparsity, layer_sparsity)
        result["seconds"] = time.perf_counter() - started
        result["peak_mb"] = peak_rss_mb()
        result["decoder_sparsity"] = decoder_sparsity(model)
    if val is not None:
        result["ppl"] = perplexity(model.eval(), val)
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(args, spec, model: Path | None, big: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", *map(str, spec), "--samples", str(args.samples),
           "--big-samples", str(args.big_samples), "--threads", str(args.threads)]
    cmd += ["--model", str(model)] + (["--big"] if big else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        print(f"worker {spec} failed ({done.returncode}): " + " | ".join(tail), flush=True)
        return {"tool": spec[0], "method": spec[1], "target": spec[2], "sparsity": float(spec[3]),
                "layer_sparsity": spec[4], "error": tail[-1] if tail else str(done.returncode)}
    result = json.loads(lines[-1][len("RESULT "):])
    print(json.dumps(result), flush=True)
    return result


def table(title: str, results: list[dict], baselines: dict[str, dict]) -> None:
    print(f"\n### {title}\n")
    print("| tool | method | target | sparsity | layers | val ppl | prune s | peak RSS MB | peak - baseline MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tool, base in baselines.items():
        ppl = f"{base['ppl']:.3f}" if "ppl" in base else "-"
        print(f"| {tool} | dense (load only) | - | 0 | - | {ppl} | - | {base['loaded_mb']:.0f} | 0 |")
    for r in results:
        if "error" in r:
            print(f"| {r['tool']} | {r['method']} | {r['target']} | {r['sparsity']} | {r['layer_sparsity']} "
                  f"| failed: {r['error'][:80]} | | | |")
            continue
        ppl = f"{r['ppl']:.3f}" if "ppl" in r else "-"
        delta = r["peak_mb"] - baselines[r["tool"]]["loaded_mb"]
        print(f"| {r['tool']} | {r['method']} | {r['target']} | {r['decoder_sparsity']:.3f} | {r['layer_sparsity']} "
              f"| {ppl} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {delta:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench_oneshot_work"), help="cache of the trained LM")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500, help="training steps of the small LM (batch 32)")
    parser.add_argument("--samples", type=int, default=128, help="calibration sequences of 128 bytes")
    parser.add_argument("--big-samples", type=int, default=16, help="calibration sequences of the ~125M model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every process (on a shared "
                        "machine more threads than free cores make the tools' many small kernels far slower)")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-small", action="store_true", help="only the ~125M model's times (no training)")
    parser.add_argument("--only", default=None, help="run only specs whose 'tool method target' contains this")
    parser.add_argument("--worker", nargs=5, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--big", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()}", flush=True)
    model = None if args.skip_small else train(args.work, args.hidden, args.layers, args.steps)
    for title, runs, big in ((f"Llama h{args.hidden} x {args.layers} trained on stdlib_text, {args.samples} x "
                              f"{SEQ_LEN} calibration", SMALL_RUNS, False),
                             (f"random Llama ~125M (h768 x 12, vocab 32000), {args.big_samples} x {SEQ_LEN} "
                              "calibration", BIG_RUNS, True)):
        if (big and args.skip_big) or (not big and args.skip_small):
            continue
        if big:  # saved once: llmcompressor reads files next to the model (it fails on a model without a path)
            model = random_big(args.work)
        baselines = {tool: run_worker(args, (tool, "load", "-", 0, "-"), model, big)
                     for tool in ("prunecli", "llmcompressor")}
        results = [run_worker(args, spec, model, big) for spec in runs
                   if args.only is None or args.only in " ".join(map(str, spec[:3]))]
        table(title, results, baselines)
        print(f"load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
