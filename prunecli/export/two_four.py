"""2:4 semi-structured sparsity: the invariant, a portable packed form, and torch's semi-structured conversion.

A 2:4 weight keeps at most 2 of every 4 consecutive weights along its input dim, the pattern NVIDIA's sparse
tensor cores (Ampere, compute capability >= 8.0) run at up to twice the dense matmul rate (Mishra et al.,
"Accelerating Sparse Deep Neural Networks", 2021, https://arxiv.org/abs/2104.08378).

torch's ``SparseSemiStructuredTensor`` exists only on CUDA and cannot be saved with safetensors, so files hold
:func:`pack`'s portable form of a ``[out, in]`` weight: ``values`` ``[out, in/2]`` (the 2 kept weights of each
group of 4, in order) and ``positions`` ``uint8 [out, ceil(in/8)]`` (each kept weight's index 0-3 in its group,
2 bits each, 4 per byte, lowest bits first). A group with fewer than 2 non-zeros keeps zeros at its lowest free
positions, so every weight packs to the same shapes and :func:`unpack` returns it bit for bit (zeros as +0.0: a
masked weight of either sign is 0).

:func:`convert` swaps a model's packed layers for semi-structured tensors on a capable GPU; :func:`kernel_fit`
and :func:`cuda_support` say why a layer or a device is left dense.
"""

from __future__ import annotations

import sys
from typing import Optional

import torch
from torch import nn

GROUP = 4   # weights per group along the input dim
KEEP = 2    # weights kept per group
MIN_CAPABILITY = (8, 0)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2's linear layers: ``y = x @ W + b``, weight ``[in, out]``)."""
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    return isinstance(conv1d, type) and isinstance(module, conv1d)


def matrix(module: nn.Module) -> torch.Tensor:
    """A Linear's or Conv1D's weight as ``[out, in]`` (Conv1D's transposed; a view, no copy)."""
    return module.weight.t() if is_conv1d(module) else module.weight


def violation(weight: torch.Tensor) -> Optional[str]:
    """Why a ``[out, in]`` weight is not 2:4 along its input dim, or None when it is."""
    if weight.dim() != 2:
        return f"a {weight.dim()}-D weight, not a matrix"
    out, inputs = weight.shape
    if inputs % GROUP:
        return f"its {inputs} inputs are not a multiple of {GROUP}"
    kept = (weight.detach() != 0).reshape(out, inputs // GROUP, GROUP).sum(-1)
    bad = int((kept > KEEP).sum())
    if bad:
        return f"{bad} of {kept.numel()} groups of {GROUP} inputs keep more than {KEEP} weights"
    return None


def pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values [out, in/2], positions uint8 [out, ceil(in/8)])`` of a 2:4 ``[out, in]`` weight (see module doc).

    The caller checks :func:`violation` first: a group with more than 2 non-zeros would lose weights here.
    """
    assert violation(weight) is None, violation(weight)
    out, inputs = weight.shape
    groups = weight.detach().reshape(out, inputs // GROUP, GROUP)
    # Non-zeros first, then the lowest free positions, each pair in ascending position order.
    order = (groups != 0).to(torch.int8) * GROUP + torch.arange(GROUP - 1, -1, -1, dtype=torch.int8)
    index = order.topk(KEEP, dim=-1).indices.sort(dim=-1).values
    values = groups.gather(-1, index).reshape(out, inputs // GROUP * KEEP) + 0.0  # -0.0 (masked) becomes +0.0
    return values.contiguous(), _pack_bits(index.reshape(out, -1).to(torch.uint8))


def unpack(values: torch.Tensor, positions: torch.Tensor, inputs: int) -> torch.Tensor:
    """The ``[out, inputs]`` weight that :func:`pack` turned into ``(values, positions)``, bit for bit; positions
    that are not ascending within a group (never written by :func:`pack`) are a ``ValueError``."""
    out = values.shape[0]
    index = _unpack_bits(positions, inputs // GROUP * KEEP).reshape(out, inputs // GROUP, KEEP).long()
    if not bool((index[..., 0] < index[..., 1]).all()):
        raise ValueError("has positions that are not two ascending indices per group of 4")
    groups = torch.zeros(out, inputs // GROUP, GROUP, dtype=values.dtype)
    groups.scatter_(-1, index, values.reshape(out, inputs // GROUP, KEEP))
    return groups.reshape(out, inputs)


def packed_shapes(out: int, inputs: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The shapes of :func:`pack`'s ``values`` and ``positions`` for a ``[out, inputs]`` weight."""
    kept = inputs // GROUP * KEEP
    return (out, kept), (out, -(-kept // 4))


def _pack_bits(index: torch.Tensor) -> torch.Tensor:
    """2-bit numbers ``[rows, n]`` (0-3) as bytes ``[rows, ceil(n/4)]``, 4 per byte, lowest bits first."""
    rows, n = index.shape
    padded = torch.zeros(rows, -(-n // 4) * 4, dtype=torch.uint8)
    padded[:, :n] = index
    quads = padded.reshape(rows, -1, 4)
    return quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6


def _unpack_bits(data: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` 2-bit numbers of each row of bytes written by :func:`_pack_bits`."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
    return ((data.unsqueeze(-1) >> shifts) & 3).reshape(data.shape[0], -1)[:, :n]


def cuda_support(device: Optional[torch.device] = None) -> Optional[str]:
    """Why ``device`` (default: the current CUDA device) cannot run semi-structured matmuls, or None if it can."""
    if not torch.cuda.is_available():
        return "this machine has no CUDA device"
    device = device or gpu()
    if device.type != "cuda":
        return f"device {device} is not a CUDA device"
    capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < MIN_CAPABILITY:
        return (f"{torch.cuda.get_device_name(device)} has compute capability {capability[0]}.{capability[1]}, "
                f"below {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}")
    return None


def gpu() -> torch.device:
    """The current CUDA device (where exports convert and check)."""
    return torch.device("cuda", torch.cuda.current_device())


def backend() -> type:
    """The ``SparseSemiStructuredTensor`` subclass used here: cuSPARSELt when torch has it, else CUTLASS."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS
    from torch.sparse.semi_structured import SparseSemiStructuredTensor

    use_cutlass = SparseSemiStructuredTensor._FORCE_CUTLASS or not torch.backends.cusparselt.is_available()
    return SparseSemiStructuredTensorCUTLASS if use_cutlass else SparseSemiStructuredTensorCUSPARSELT


def kernel_fit(shape: tuple[int, int], dtype: torch.dtype, kind: Optional[type] = None) -> Optional[str]:
    """Why a ``[out, in]`` weight of ``dtype`` does not fit the kernels' shape rule (both sizes multiples of the
    backend's minimum, read from torch's ``_DTYPE_SHAPE_CONSTRAINTS``), or None when it fits."""
    kind = kind or backend()
    limits = kind._DTYPE_SHAPE_CONSTRAINTS.get(dtype)
    if limits is None:
        return f"{kind.BACKEND} has no {dtype} kernels"
    rows, cols = limits.sparse_min_rows, limits.sparse_min_cols
    if shape[0] % rows or shape[1] % cols or shape[0] < rows or shape[1] < cols:
        return f"[{shape[0]}, {shape[1]}] is not a multiple of {kind.BACKEND}'s [{rows}, {cols}] for {dtype}"
    return None


def convertible(model: nn.Module, names: list[str], dtype: torch.dtype,
                kind: Optional[type] = None) -> tuple[list[str], dict[str, str]]:
    """Which of the modules ``names`` (2:4 Linear or Conv1D layers) :func:`convert` would swap, and why the rest
    stay dense: a layer whose forward is not ``nn.Linear``'s or Conv1D's, or one inside an
    ``nn.MultiheadAttention`` (which reads its weights itself), or a shape the kernels do not take."""
    modules = dict(model.named_modules())
    inside_mha = {f"{n}.{c}" if n else c for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)
                  for c, _ in m.named_children()}
    ready, dense = [], {}
    for name in names:
        module = modules[name]
        if name in inside_mha:
            dense[name] = "nn.MultiheadAttention reads its weights itself, not through the layer's forward"
        elif not is_conv1d(module) and type(module).forward is not nn.Linear.forward:
            dense[name] = f"{type(module).__name__} has its own forward"
        elif reason := kernel_fit(tuple(matrix(module).shape), dtype, kind):
            dense[name] = reason
        else:
            ready.append(name)
    return ready, dense


def convert(model: nn.Module, names: list[str]) -> None:
    """Swap each named layer's weight (on a capable GPU, fp16/bf16) for ``torch.sparse.to_sparse_semi_structured``;
    a Conv1D becomes the ``nn.Linear`` it computes (its weight transposed), which the sparse kernels take."""
    from torch.sparse import to_sparse_semi_structured

    for name in names:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        module = getattr(owner, child)
        if is_conv1d(module):
            linear = nn.Linear(module.weight.shape[0], module.weight.shape[1], device=module.weight.device,
                               dtype=module.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                linear.bias.copy_(module.bias)
            setattr(owner, child, linear)
            module = linear
        module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach().contiguous()),
                                     requires_grad=False)


def matmul_times(out: int = 4096, inputs: int = 4096, batch: int = 4096, dtype: torch.dtype = torch.float16,
                 repeats: int = 50) -> dict[str, float]:
    """Median milliseconds of ``F.linear`` with a 2:4 ``[out, inputs]`` weight, dense and semi-structured, on the
    current CUDA device, the speedup, and the max abs difference of their outputs (inputs and weights scaled so
    outputs are of order 1). Needs a capable GPU (see :func:`cuda_support`)."""
    import torch.nn.functional as F
    from torch.sparse import to_sparse_semi_structured

    g = torch.Generator(device="cuda").manual_seed(0)
    weight = torch.randn(out, inputs, device="cuda", generator=g) / inputs ** 0.5
    keep = weight.abs().reshape(out, -1, GROUP).topk(KEEP, dim=-1).indices
    mask = torch.zeros(out, inputs // GROUP, GROUP, device="cuda", dtype=torch.bool).scatter_(-1, keep, True)
    dense = (weight * mask.reshape(out, inputs)).to(dtype)
    sparse = to_sparse_semi_structured(dense)
    x = torch.randn(batch, inputs, device="cuda", generator=g).to(dtype)

    def median_ms(w: torch.Tensor) -> float:
        for _ in range(5):
            F.linear(x, w)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            F.linear(x, w)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    with torch.no_grad():
        diff = float((F.linear(x, sparse).float() - F.linear(x, dense).float()).abs().max())
        dense_ms, sparse_ms = median_ms(dense), median_ms(sparse)
    return {"dense_ms": dense_ms, "sparse_ms": sparse_ms, "speedup": dense_ms / sparse_ms, "max_abs_diff": diff}
