"""Pruning inside other training loops: a Hugging Face ``TrainerCallback`` (:mod:`prunecli.integrations.hf`,
``pip install prunecli[hf]``) and a Lightning ``Callback`` (:mod:`prunecli.integrations.lightning`,
``pip install prunecli[lightning]``).

Both take the CLI's pruner config: a preset name of ``conf/pruner/`` plus overrides
(:func:`prunecli.presets.pruner_preset`), or the mapping :func:`prunecli.build_pruner` takes. Importing this
package imports neither framework; each module imports its own on first use.
"""
