"""The pruner: composes the five axes and reacts to the training-loop hooks of :mod:`prunecli.hooks`.

Masks are bool tensors keyed by parameter FQN (True = kept). In the steady state nothing touches the forward
pass: gradients of pruned weights are zeroed as they are accumulated (a post-accumulate-grad hook, while the
gradient is still in cache), and the masks are re-applied in place after the optimizer step, so neither
momentum nor weight decay can revive a pruned weight. When the pruner knows the optimizer and its type is one
whose update is exactly zero for a zero weight with zero gradient and zero state (SGD, Adam, AdamW, ...), the
state of pruned weights is zeroed at each mask update instead and the per-step re-application is skipped:
the weights provably stay zero, and a masked model trains at dense speed. A mask update that only prunes
more units (the usual case: pruned units stay pruned) clears just the newly pruned elements of the masks,
weights and optimizer state (:mod:`prunecli._increments`); any other update recomputes everything.

Criteria that need data get it through hooks the pruner installs and removes itself: gradients are observed
in ``on_before_optimizer_step``; activations through forward hooks (:mod:`prunecli._taps`) that exist only
while a mask update is due within the criterion's next ``batches`` training forward passes. A mask update
due before the criterion is ready waits for it; if the run ends with an update still waiting, ``on_train_end``
raises a :class:`~prunecli.errors.ConfigError` naming what was never observed.

In ``on_before_optimizer_step`` the order is: the criterion observes the loss's gradients, then the
regulariser (:mod:`prunecli.regularizers`, inside its window) adds its penalty's gradient, then the gradients
of pruned weights are zeroed again, so no penalty moves a pruned weight.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import Tensor, nn

from prunecli._increments import element_indices, newly_pruned, score_ceiling, zero_at
from prunecli._parts import optional
from prunecli._progressive import Progressive
from prunecli._taps import ActivationTaps
from prunecli.allocation import Allocation
from prunecli.criteria import Criterion, name_of
from prunecli.errors import ConfigError
from prunecli.regularizers import Regularizer, Window
from prunecli.report import PrunerReport, sparsity_report
from prunecli.schedules import Schedule
from prunecli.sites import Site
from prunecli.targets import Target

log = logging.getLogger(__name__)


# Optimizers whose step leaves a parameter at exactly zero when its gradient and its state are zero.
ZERO_PRESERVING = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam,
                   torch.optim.Adamax, torch.optim.Adagrad, torch.optim.RMSprop, torch.optim.Adadelta)
INITIAL_MASKS = ("dense", "nonzero")
REAPPLY = ("auto", "always")


def check_options(initial_masks: str, reapply: str) -> None:
    """Refuse an unknown ``initial_masks`` or ``reapply`` value with a one-line :class:`ConfigError`."""
    if initial_masks not in INITIAL_MASKS:
        raise ConfigError("pruner.initial_masks", initial_masks, INITIAL_MASKS)
    if reapply not in REAPPLY:
        raise ConfigError("pruner.reapply", reapply, REAPPLY)


class Pruner:
    """Masks ``model`` on ready parts and reacts to the training-loop hooks: build one with
    :func:`prunecli.build_pruner`, which parses the parts, finds the sites, solves the objective into the
    schedule's final sparsity and binds the parts to the sites (:mod:`prunecli.config`).

    Args:
        model: The model; its parameters are masked in place.
        sites: The target's sites on the selected layers (:mod:`prunecli.sites`).
        target: What is pruned together (:mod:`prunecli.targets`); names the units in a report.
        criterion: How units are scored (:mod:`prunecli.criteria`), bound to ``sites``.
        allocation: How the budget is spread over layers (:mod:`prunecli.allocation`), bound.
        schedule: When masks change and to which sparsity (:mod:`prunecli.schedules`); its ``final_sparsity``
            is the solved target.
        optimizer: The optimizer, if known: enables the zero-state fast path (see module docstring).
        initial_masks: ``dense`` (all kept) or ``nonzero`` (keep the zeros the model already has).
        reapply: ``auto`` (skip per-step re-application when provably unnecessary) or ``always``.
        regularizer: A penalty whose gradient is added before each optimizer step inside ``regularizer_window``.
        regularizer_window: The optimizer steps during which ``regularizer`` acts (default: all).
        progressive: Mask interpolation between updates (:mod:`prunecli._progressive`), checked against the
            sites and schedule; default off.
        skipped: ``{module FQN: reason}`` of the selected layers the target could not prune.

    Raises:
        ConfigError: For an unknown ``initial_masks`` or ``reapply``.
    """

    def __init__(self, model: nn.Module, sites: list[Site], *, target: Target, criterion: Criterion,
                 allocation: Allocation, schedule: Schedule, optimizer: torch.optim.Optimizer | None = None,
                 initial_masks: str = "dense", reapply: str = "auto", regularizer: Regularizer | None = None,
                 regularizer_window: Window = Window(), progressive: Progressive | None = None,
                 skipped: dict[str, str] | None = None, requested_sparsity: float | None = None):
        check_options(initial_masks, reapply)
        # the sparsity asked for before an objective solved it into schedule.final_sparsity (see state_dict)
        self.requested_sparsity = schedule.final_sparsity if requested_sparsity is None else requested_sparsity
        self.model, self.target, self.criterion, self.allocation = model, target, criterion, allocation
        self.sites: dict[str, Site] = {s.name: s for s in sites}
        self.schedule, self.skipped = schedule, dict(skipped or {})
        self.progressive = progressive if progressive is not None else Progressive()
        self.regularizer, self.regularizer_window = regularizer, regularizer_window
        needs_activations = optional(criterion, "needs_activations")
        self._taps = ActivationTaps(model, self.sites, criterion) if needs_activations else None
        self.params: dict[str, nn.Parameter] = {m.name: m.param for s in sites for m in s.members}
        self._scored = {m.name: m.param for s in sites for m in s.members if m.scored}
        self.masks: dict[str, Tensor] = {
            n: (p.detach() != 0) if initial_masks == "nonzero" else torch.ones_like(p, dtype=torch.bool)
            for n, p in self.params.items()}
        self.reapply, self.optimizer = reapply, optimizer
        self.step, self.target_sparsity, self._pending = 0, 0.0, False
        self.mask_updates = 0  # calls of update_masks, so observers (experiment loggers) see when masks changed
        self._hooks: list[Any] = []
        self._fcache: dict[str, Tensor] | None = None  # see _fmasks
        self._refresh(units=True)

    # ----------------------------------------------------------------- hooks (see prunecli.hooks)
    def on_train_begin(self) -> None:
        self._install_grad_hooks()
        self._apply()

    def on_epoch_begin(self, epoch: int) -> None:
        pass

    def on_step_begin(self, step: int | None = None) -> None:
        if step is not None:
            self.step = step
        if self.progressive.advance(self.step, self.masks):
            self._masks_changed()
        if self.schedule.is_update_step(self.step) or self._pending:
            self._pending = not self.criterion.ready
            if not self._pending:
                self.update_masks(self.schedule.sparsity(self.step))
        self._tap_activations()

    def on_before_optimizer_step(self) -> None:
        if self.criterion.needs_grad and (self._pending or self.step <= self.schedule.end_step):
            self.criterion.observe(self._scored)
        if self.regularizer is not None and self.step in self.regularizer_window:
            self.regularizer.penalize(self.sites)
            self._mask_grads()

    def on_after_optimizer_step(self) -> None:
        if self._reapply_each_step and self._active:
            with torch.no_grad():
                torch._foreach_mul_([self.params[n] for n in self._active], [self._fmasks[n] for n in self._active])
        self.step += 1

    def on_step_end(self) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> None:
        pass

    def on_train_end(self) -> None:
        self.remove_hooks()
        self._apply()
        if self._pending:
            raise ConfigError("pruner.criterion", name_of(self.criterion),
                              "a criterion whose data the run provides", f"the run ended at step {self.step} "
                              f"with a mask update still waiting for {self._missing()}")

    def on_before_eval(self) -> None:
        if self._taps is not None:
            self._taps.remove()  # evaluation batches are no training statistics; on_step_begin re-installs
        self._apply()

    def on_after_eval(self) -> None:
        pass

    # ----------------------------------------------------------------- masks
    def prune_to(self, sparsity: float) -> None:
        """Prune to ``sparsity`` now, on the criterion's current scores (iterative rounds do at a round's start).

        Raises:
            ConfigError: (``pruner.criterion``) the criterion has no data yet, e.g. gradients or activations.
        """
        if not self.criterion.ready:
            raise ConfigError("pruner.criterion", name_of(self.criterion), "a criterion that scores the weights "
                              "alone (magnitude, l1, l2, fpgm, bn_scale, random)", "rounds prune at a round's start")
        self.update_masks(sparsity)

    @torch.no_grad()
    def update_masks(self, sparsity: float) -> None:
        """Recompute every mask for ``sparsity``; pruned units stay pruned (their score is set to -inf). The
        worker of the schedule's updates and of :meth:`prune_to`, which also checks that the criterion is ready."""
        self.mask_updates += 1
        finished = self.progressive.finish(self.masks)
        if finished:
            self._refresh(units=True)
        interpolate = self.progressive.interpolates(self.step, self.schedule)
        before = {n: self.masks[n].clone() for n in self._scored} if interpolate else {}
        scores = {}
        for name, site in self.sites.items():
            score = torch.minimum(self.criterion.score(site).float(), self._ceiling[name])  # pruned: -inf
            scores[name] = site.protect(score) if site.protect else score
        keep = self.allocation.allocate(scores, self.sites, sparsity)
        keep = {name: site.rounded(keep[name], scores[name]) for name, site in self.sites.items()}
        units = None if finished or interpolate else newly_pruned(self._keep, keep)
        newly = None if units is None else element_indices(self.sites, self.masks, units)
        if newly is None:
            masks: dict[str, Tensor] = {}
            for name, site in self.sites.items():  # a parameter in several sites (coupled channels) keeps the AND
                for pname, mask in site.unit_masks(keep[name]).items():
                    masks[pname] = mask if pname not in masks else masks[pname] & mask
            self.masks.update(masks)
            self._set_keep(keep)
        else:  # only more units pruned: clear just their elements and ceilings
            for pname, idx in newly.items():
                self.masks[pname].view(-1).index_fill_(0, idx.to(self.masks[pname].device), False)
            for name, idx in units.items():
                self._ceiling[name].index_fill_(0, idx.to(self._ceiling[name].device), float("-inf"))
            self._keep = keep
        if interpolate:
            self.progressive.begin(self.step, self.schedule, before, self.masks, self.sites, self.criterion.score)
        self.target_sparsity = sparsity
        self._masks_changed(newly)
        self.criterion.after_update()
        log.debug("step %d: masks updated to sparsity %.4f", self.step, sparsity)

    def _masks_changed(self, newly: dict[str, Tensor] | None = None) -> None:
        """Bring float masks, weights and optimizer state in line with ``self.masks``: everything, or (given
        ``newly``, the flat indices of the only elements that went from kept to pruned) just those elements."""
        if newly is None:
            self._refresh()
            self._apply()
            self._zero_optimizer_state()
            return
        for n, idx in newly.items():
            if idx.numel():
                for t in (self._fmasks[n], self.params[n], *self._state_like(self.params[n])):
                    zero_at(t, idx, self._fmasks[n])
                if n not in self._active_set:
                    self._active.append(n)
        self._active_set = frozenset(self._active)

    def _unit_keep(self, site: Site) -> Tensor:
        member = next(m for m in site.members if m.scored)
        return member.layout.to_units(self.masks[member.name]).any(dim=1)

    def _refresh(self, units: bool = False) -> None:
        """Bring the float masks (once built, see _fmasks) in line; only masks with a pruned element are 'active'.
        With ``units``, also derive each site's per-unit keep vector from the element masks."""
        if units:
            self._set_keep({name: self._unit_keep(site) for name, site in self.sites.items()})
        # Bool kernels are slow on CPU: converting and reducing the masks' uint8 view is ~8x faster.
        if self._fcache is not None:
            old = self._fcache
            self._fcache = {n: old[n].copy_(m.view(torch.uint8)) if n in old
                            else m.view(torch.uint8).to(self.params[n].dtype) for n, m in self.masks.items()}
        self._active = [n for n, m in self.masks.items() if m.numel() and not int(m.view(torch.uint8).min())]
        self._active_set = frozenset(self._active)

    def _set_keep(self, keep: dict[str, Tensor]) -> None:
        """Per-unit keep vectors, and each site's score ceiling (pruned units score -inf, so they stay pruned)."""
        self._keep = keep
        self._ceiling = {n: score_ceiling(k) for n, k in keep.items()}

    @property
    def _fmasks(self) -> dict[str, Tensor]:
        """Float masks in each parameter's dtype, for the training step's fused multiplies; built at first use.

        A one-shot run never trains, so it never holds them: for every pruned layer at once they take as much
        memory as the pruned weights themselves (14 GB for a 7B fp16 model)."""
        if self._fcache is None:
            self._fcache = {n: m.view(torch.uint8).to(self.params[n].dtype) for n, m in self.masks.items()}
        return self._fcache

    @torch.no_grad()
    def _apply(self) -> None:
        if self._active and self._fcache is None:  # no float masks yet: one tensor's at a time, same products
            for n in self._active:
                self.params[n].mul_(self.masks[n])
        elif self._active:
            torch._foreach_mul_([self.params[n] for n in self._active], [self._fmasks[n] for n in self._active])

    def _state_like(self, p: Tensor) -> list[Tensor]:
        """The optimizer's per-element state tensors of ``p`` (momentum, Adam moments, ...)."""
        if self.optimizer is None:
            return []
        return [v for v in self.optimizer.state.get(p, {}).values() if isinstance(v, Tensor) and v.shape == p.shape]

    @torch.no_grad()
    def _zero_optimizer_state(self) -> None:
        states, masks = [], []
        for n in self._active:
            p = self.params[n]
            for value in self._state_like(p):
                states.append(value)
                masks.append(self._fmasks[n] if value.dtype == p.dtype else self._fmasks[n].to(value.dtype))
        if states:
            torch._foreach_mul_(states, masks)

    @property
    def _reapply_each_step(self) -> bool:
        return self.reapply == "always" or type(self.optimizer) not in ZERO_PRESERVING

    @torch.no_grad()
    def _mask_grads(self) -> None:
        for n in self._active:
            grad = self.params[n].grad
            if grad is not None:
                grad.mul_(self._fmasks[n])

    def _tap_activations(self) -> None:
        """Forward hooks on while a mask update within the criterion's next ``batches`` passes needs data."""
        if self._taps is None:
            return
        batches = optional(self.criterion, "batches")
        ahead = range(self.step + 1, self.step + batches + 1)
        due = self._pending or any(self.schedule.is_update_step(s) for s in ahead)
        if due and not self.criterion.ready:
            self._taps.install()
        else:
            self._taps.remove()

    def _missing(self) -> str:
        batches = optional(self.criterion, "batches")
        if self._taps is not None:
            return f"activations of {batches} training batches through every pruned layer"
        return f"gradients of {batches} optimizer step(s)" if self.criterion.needs_grad else "its data"

    def _install_grad_hooks(self) -> None:
        if self._hooks:
            return
        for name, p in self.params.items():
            if p.requires_grad:
                self._hooks.append(p.register_post_accumulate_grad_hook(self._grad_hook(name)))

    def _grad_hook(self, name: str):
        def mask_grad(param: Tensor) -> None:
            if name in self._active_set and param.grad is not None:
                param.grad.mul_(self._fmasks[name])

        return mask_grad

    def remove_hooks(self) -> None:
        """Remove the gradient and forward hooks (done by ``on_train_end``)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self._taps is not None:
            self._taps.remove()

    # ----------------------------------------------------------------- state and reporting
    def report(self) -> PrunerReport:
        """Per-layer and overall sparsity, total and non-zero parameter counts, the fraction of units removed
        and each parameter's kind (:meth:`unit_sparsity`, :meth:`parameter_kinds`), the target sparsity (the
        schedule's final one, after the objective) and a searched allocation's report."""
        base = sparsity_report(self.model, self.masks, unit_sparsity=self.unit_sparsity(),
                               kinds=self.parameter_kinds())
        return PrunerReport(**vars(base), target_sparsity=self.schedule.final_sparsity,
                            search=optional(self.allocation, "report")())

    @property
    def unit_name(self) -> str | None:
        """What the target's units are called in a summary (``channels``, ``heads``), or None for weights."""
        return optional(self.target, "unit_name")

    def unit_sparsity(self) -> float:
        """Fraction of the prunable units (channels, heads, blocks or weights) removed, each unit counted by the
        elements it stands for (``site.unit_size``), as allocations count the goal ``sparsity``. For channel
        targets this is the goal's unit, while the weight sparsity also counts the consumers' lost inputs."""
        total = sum(s.num_units * s.unit_size for s in self.sites.values())
        pruned = sum(int((~self._keep[n]).sum()) * s.unit_size for n, s in self.sites.items())
        return pruned / total if total else 0.0

    def parameter_kinds(self) -> dict[str, str]:
        """Per masked parameter FQN: ``units`` when its own units (output channels, heads, weights) are pruned,
        ``inputs`` when it only loses the input columns of units pruned elsewhere (e.g. a dense classifier
        after a pruned layer: its outputs stay)."""
        kinds = {n: "inputs" for n in self.masks}
        for site in self.sites.values():
            for m in site.members:
                if not m.consumer:
                    kinds[m.name] = "units"
        return kinds

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: masks, step, schedule position, the criterion's accumulators and the
        regulariser's state (if it has one)."""
        return {"step": self.step, "pending": self._pending, "target_sparsity": self.target_sparsity,
                # what the objective solved the request to, on the run's weights: a resume builds on fresh ones
                "solved_sparsity": [self.requested_sparsity, self.schedule.final_sparsity],
                "masks": {n: m.clone() for n, m in self.masks.items()}, "criterion": self.criterion.state_dict(),
                "progressive": self.progressive.state_dict(),
                "regularizer": optional(self.regularizer, "state_dict")(),
                "allocation": optional(self.allocation, "state_dict")()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output and re-apply the masks to the model."""
        masks = state["masks"]
        if set(masks) != set(self.masks):
            missing, extra = sorted(set(self.masks) - set(masks)), sorted(set(masks) - set(self.masks))
            raise ConfigError("pruner.state.masks", f"missing {missing[:3]}, unexpected {extra[:3]}",
                              "masks for exactly the parameters this pruner targets")
        for n, m in masks.items():
            if tuple(m.shape) != tuple(self.masks[n].shape):
                raise ConfigError(f"pruner.state.masks.{n}", tuple(m.shape), f"shape {tuple(self.masks[n].shape)}")
            self.masks[n] = m.to(device=self.params[n].device, dtype=torch.bool).clone()
        self.step, self._pending = int(state["step"]), bool(state["pending"])
        self.target_sparsity = float(state["target_sparsity"])
        requested, solved = state.get("solved_sparsity") or (None, None)
        if requested == self.requested_sparsity and solved is not None:  # same request: the run's own solution
            self.schedule = dataclasses.replace(self.schedule, final_sparsity=float(solved))
        self.criterion.load_state_dict(state.get("criterion", {}))
        self.progressive.load_state_dict(state.get("progressive", {}))
        optional(self.regularizer, "load_state_dict")(state.get("regularizer", {}))
        optional(self.allocation, "load_state_dict")(state.get("allocation", {}))
        self._refresh(units=True)
        self._apply()
