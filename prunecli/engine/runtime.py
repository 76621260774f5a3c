"""Where and how the engine computes: device choice, mixed precision, seeding and RNG state."""

from __future__ import annotations

import contextlib
import random
from typing import Any, ContextManager, Optional

import numpy as np
import torch

from prunecli.errors import ConfigError


def pick_device(name: str = "auto", key: str = "trainer.device") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable device is a ConfigError naming ``key``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(key, name, "auto, cpu, cuda, cuda:<index> or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        usable = [k for k, ok in available.items() if ok]
        raise ConfigError(key, name, ["auto", *usable], reason=f"{device.type} is not available here")
    return device


def amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None for fp32. AMP runs on CUDA only; elsewhere everything is fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16  # auto and bf16


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager[Any]:
    """An autocast context for the forward pass (a no-op without AMP)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: Optional[torch.dtype]) -> Optional[torch.amp.GradScaler]:
    """A GradScaler for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type) if dtype == torch.float16 else None


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy and random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, random) as tensors and JSON-able values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "random": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    r = state["random"]
    random.setstate((r["version"], tuple(r["state"]), r["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
