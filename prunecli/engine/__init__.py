"""The built-in training engine: ``setup()`` builds a run from the composed config, ``train()`` runs it.

    run = setup(cfg, run_dir)       # model, data, its task (prunecli.tasks), device (prunecli.engine.setup)
    result = train(run)             # dense pre-training, pruning + fine-tuning (prunecli.engine.loop)

The engine owns the loop and calls the pruner's hooks (:mod:`prunecli.hooks`) in their documented order.
"""

from prunecli.engine.evaluation import evaluate
from prunecli.engine.loop import TrainResult, train
from prunecli.engine.settings import TrainerSettings
from prunecli.engine.setup import Run, setup

__all__ = ["Run", "TrainResult", "TrainerSettings", "evaluate", "setup", "train"]
