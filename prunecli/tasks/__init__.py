"""Tasks: what a batch is and how a model is judged (:class:`Task`), one registered class per task.

    from prunecli.tasks import get_task, task_of
    task = get_task("image_classification")      # or task_of(checkpoint.spec), get_task(data.task)
    loss, sums = task.training_step(model, task.to_device(batch, device))
    task.metrics(totals)                          # {"loss": ..., "accuracy": ...}
    get_task("causal_lm").metrics(totals)         # {"log_likelihood": ..., "loss": ..., "perplexity": ...}
    get_task("text_classification")               # batches of input_ids, attention_mask and labels

A dataset bundle names its task (:attr:`prunecli.data.DataBundle.task`); the engine builds that task and stores
its name in the model spec of every checkpoint (``"task": "image_classification"``). A spec without a name is
image classification. A new task is one class decorated with :func:`register_task` in a module imported here.
"""

from prunecli.tasks import causal_lm, image_classification, text_classification  # noqa: F401  (importing registers them)
from prunecli.tasks._registry import DEFAULT_TASK, get_task, list_tasks, register_task, task_of
from prunecli.tasks.base import Inputs, Sums, Task
from prunecli.tasks.causal_lm import CausalLM
from prunecli.tasks.image_classification import ImageClassification
from prunecli.tasks.text_classification import TextClassification

__all__ = ["CausalLM", "DEFAULT_TASK", "ImageClassification", "Inputs", "Sums", "Task", "TextClassification",
           "get_task", "list_tasks", "register_task", "task_of"]
