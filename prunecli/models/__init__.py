"""Models by short name: built-ins registered with :func:`register_model`, plus every torchvision classifier.

    from prunecli.models import build_model
    model = build_model("resnet18", in_channels=1, num_classes=10, image_size=8)   # small stem, 1 channel

Hugging Face ``transformers`` models (``model=hf``, a local directory or a config) are built by
:func:`build_hf_model` (:mod:`prunecli.models.hf`); transformers is imported only then.

Config nodes ``conf/model/<name>.yaml`` point ``_target_`` at :func:`build_model` with ``_partial_: true``;
the task completes them with the dataset's ``in_channels``, ``num_classes`` and ``image_size``. Nodes read back
from checkpoint files are rebuilt only through the builders registered in :mod:`prunecli.models.spec`.
"""

from prunecli.models import cifar_resnet, small, tiny_lm  # noqa: F401  (importing registers the built-ins)
from prunecli.models._registry import register_model
from prunecli.models.factory import build_model, list_models, model_spec, resolve_small_stem
from prunecli.models.hf import build_hf_model, recorded_node
from prunecli.models.torchvision_models import build_torchvision_model, torchvision_model_names
from prunecli.models.weights import load_weights

__all__ = [
    "build_hf_model",
    "build_model",
    "build_torchvision_model",
    "list_models",
    "load_weights",
    "model_spec",
    "recorded_node",
    "register_model",
    "resolve_small_stem",
    "torchvision_model_names",
]
