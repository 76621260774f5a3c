"""The papers' ordering on a tiny_lm briefly trained on stdlib_text: perplexity after one-shot pruning.

Measured (250 AdamW steps, 8 x 16 calibration sequences of 64 bytes; validation perplexity, dense 7.57):

    =========================  =========  =====  =========
    pruned                     magnitude  wanda  sparsegpt
    =========================  =========  =====  =========
    50% unstructured           7.97       7.98   7.83
    2:4                        8.73       8.86   8.27
    70% unstructured           11.11      9.95   8.91
    =========================  =========  =====  =========

SparseGPT beats both everywhere. Wanda beats magnitude only at 70%: at 50% the two are within 1-2% on a model
this small (Wanda's gain comes from the large outlier features of big LLMs, which a 64-wide model trained for
seconds does not grow), so that comparison is reported, not asserted.
"""

from __future__ import annotations

import copy

import pytest
from _lm import perplexity as _perplexity

from prunecli.oneshot import prune_oneshot


def _pruned(trained, method, sparsity, target):
    model, calibration, val = trained
    pruned = copy.deepcopy(model)
    prune_oneshot(pruned, calibration, method, sparsity=sparsity, target=target)
    return _perplexity(pruned, val)


@pytest.mark.parametrize("sparsity, target", [(0.5, "unstructured"), (0.5, "2:4"), (0.7, "unstructured")])
def test_sparsegpt_beats_wanda_and_magnitude(trained, sparsity, target):
    ppl = {m: _pruned(trained, m, sparsity, target) for m in ("magnitude", "wanda", "sparsegpt")}
    dense = _perplexity(trained[0], trained[2])
    assert dense < 8.5 and all(dense < p for p in ppl.values()), (dense, ppl)
    assert ppl["sparsegpt"] < min(ppl["wanda"], ppl["magnitude"]), ppl
    if sparsity == 0.7:
        assert ppl["wanda"] < 0.95 * ppl["magnitude"], ppl
