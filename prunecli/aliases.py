"""The vocabulary of older pruning APIs, mapped to prunecli's presets (``conf/pruner/<preset>.yaml``).

Users coming from NNI, Intel's NLP toolkit / Neural Compressor 1.x, or Neural Compressor 2.x type the names
they know. Each alias here has a generated config ``conf/pruner/<alias>.yaml`` (``scripts/gen_pruner_aliases.py``
writes them; a test checks they are in sync) that extends its preset and sets ``alias: <name>``;
:func:`prunecli.build_pruner` logs a note with the new name. Only algorithms prunecli implements have an alias.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from prunecli.errors import ConfigError

log = logging.getLogger(__name__)


class Alias(NamedTuple):
    preset: str
    origin: str


_NNI, _NNI1 = "NNI", "NNI 1.x"
_INC1, _INC2 = "Intel's NLP toolkit / Neural Compressor 1.x", "Neural Compressor 2.x"

ALIASES: dict[str, Alias] = {
    # NNI 2.x / 3.x pruner classes
    "LevelPruner": Alias("level", _NNI),
    "L1NormPruner": Alias("l1_norm", _NNI),
    "L2NormPruner": Alias("l2_norm", _NNI),
    "FPGMPruner": Alias("fpgm", _NNI),
    "SlimPruner": Alias("slim", _NNI),
    "ActivationAPoZRankPruner": Alias("apoz", _NNI),
    "ActivationMeanRankPruner": Alias("mean_activation", _NNI),
    "TaylorFOWeightPruner": Alias("taylor_fo", _NNI),
    "TaylorPruner": Alias("taylor_fo", _NNI),
    "AGPPruner": Alias("agp", _NNI),
    "LinearPruner": Alias("linear", _NNI),
    "MovementPruner": Alias("movement", _NNI),
    "SensitivityPruner": Alias("sensitivity", _NNI),
    "SimulatedAnnealingPruner": Alias("simulated_annealing", _NNI),
    "AutoCompressPruner": Alias("auto_compress", _NNI),
    "AMCPruner": Alias("amc", _NNI),
    "LotteryTicketPruner": Alias("lottery_ticket", _NNI),
    "ADMMPruner": Alias("admm", _NNI),
    # NNI 1.x names of the same filter pruners
    "L1FilterPruner": Alias("l1_norm", _NNI1),
    "L2FilterPruner": Alias("l2_norm", _NNI1),
    "ActivationAPoZRankFilterPruner": Alias("apoz", _NNI1),
    "ActivationMeanRankFilterPruner": Alias("mean_activation", _NNI1),
    "TaylorFOWeightFilterPruner": Alias("taylor_fo", _NNI1),
    # Intel's NLP toolkit and Neural Compressor 1.x prune types (BasicMagnitude: gradual, linear schedule)
    "BasicMagnitude": Alias("linear", _INC1),
    "PatternLock": Alias("pattern_lock", _INC1),
    "GroupLasso": Alias("group_lasso", _INC1),
    # Neural Compressor 2.x pruning_type values that differ from a preset name
    "snip_momentum_progressive": Alias("progressive", _INC2),
}


def note_alias(name: str) -> str:
    """Log (and return) the note for a config built through alias ``name``.

    Raises:
        ConfigError: ``name`` is no known alias.
    """
    alias = ALIASES.get(name)
    if alias is None:
        raise ConfigError("pruner.alias", name, sorted(ALIASES))
    note = (f"pruner={name} is {alias.origin}'s name: prunecli calls this preset '{alias.preset}' "
            f"(pruner={alias.preset})")
    log.info(note)
    return note
