"""Megatron-LM's own training loop (``megatron.training.pretrain``) on CPU + gloo.

Megatron-LM assumes a GPU from its first line (``initialize_megatron`` asserts CUDA) to its
last; megatron-core 0.19's loop otherwise runs on a CPU unchanged. :func:`apply` patches the
CUDA-only places it reaches, **only when CUDA is not available** (on a GPU it patches none of
them) and only for megatron-core 0.19.x: every patch names its target, and a target that moved
(a version bump) stops :func:`apply` with one line naming it. Process-wide, called before
Megatron-LM parses its flags (its validation reads the GPU's architecture). On every machine,
GPU included, :func:`apply` first applies :mod:`wlb.megatron.wheel` (the dataset helpers'
build, which megatron-core's wheel cannot run).

* ``initialize`` -- ``training.initialize_megatron`` runs with ``allow_no_cuda`` and, while it
  runs, sees one "device" (``torch.cuda.device_count``: it sets up the model-parallel groups
  and seeds megatron's RNG tracker only when there is one; ``set_device`` is a no-op).
* ``jit_warmup`` -- ``training.set_jit_fusion_options`` warms megatron's fused kernels up on
  CUDA tensors: not on CPU (the local spec calls none of them).
* ``device_arch`` -- ``arguments.get_device_arch_version`` reads the GPU's properties; on CPU it
  is 0 (no architecture), and ``CUDA_DEVICE_MAX_CONNECTIONS=1``, which Megatron-LM then asks for
  under TP or CP, is set.
* ``devices`` -- ``device="cuda"`` (or a device index) in tensor factories, ``Tensor.cuda()`` and
  ``.to("cuda")``, which Megatron-LM writes inline (pretrain's start-time all-reduce, its batch
  getter, timers, the optimizer's buffers, ...), give CPU tensors: a ``TorchFunctionMode`` on the
  main thread, for the rest of the process.
* ``cuda_api`` -- ``torch.cuda``'s ``current_device`` (0), ``synchronize`` and ``empty_cache``
  (no-ops), streams and events (objects whose every method is a no-op), memory statistics (0),
  ``get/set_rng_state`` and ``manual_seed`` (the CPU generator's), process-wide.
* ``rng_tracker`` -- megatron's model-parallel RNG tracker keeps its states through
  ``_get/_set_cuda_rng_state``: the CPU generator's.
* ``tensor_types`` -- the optimizers and gradient clipping check ``param.type() ==
  'torch.cuda.FloatTensor'``: ``Tensor.type()`` reports a CPU tensor's CUDA name.
* ``moe_splits`` -- MoE's all-to-all token dispatcher copies its split sizes to the host as
  numpy arrays, but only from a CUDA tensor; a CPU tensor stayed a tensor, which
  ``all_to_all_single`` refuses (expert parallelism): it becomes the numpy array a GPU gives.
* ``adam_step`` -- without TE's or apex's fused Adam, the distributed optimizer wraps torch's,
  which keeps its step per parameter (megatron: in the param groups). Loading, it read the step
  of a fresh optimizer's unallocated state (``assert len(steps) == 1``), copied that over the
  checkpoint's (``dp_reshardable``; ``fully_reshardable``: ``KeyError: 'step'``) and gave all
  parameters one step tensor, advanced once per parameter: each keeps the groups' loaded step.
* ``fp32_shards`` -- its load copies the main parameters into its shards with autograd on; in
  fp32 (the CPU's) a shard is a view of a weight ("a view of a leaf Variable"): under no_grad.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os

import torch

SUPPORTED = "0.19."
_APPLIED: list[str] = []  # the names of the patches applied (once per process)


class CudaPatchError(RuntimeError):
    """A patch's target is not where megatron-core 0.19 has it."""


def _target(module: str, name: str):
    """``module.name``, or one line naming what moved."""
    mod = importlib.import_module(module)
    if not hasattr(mod, name):
        raise CudaPatchError(f"wlb.megatron.cpu_loop: {module}.{name} is gone (megatron-core "
                             f"{_version()}; written for {SUPPORTED}x): re-check the patch")
    return mod, getattr(mod, name)


def _version() -> str:
    import megatron.core

    return megatron.core.__version__


def _mark(fn, patch: str):
    fn.__wlb_cpu_patch__ = patch
    return fn


def _cpu_device(device):
    """``device`` with CUDA (a ``cuda`` string or device, or a bare index) mapped to the CPU."""
    if isinstance(device, bool):
        return device
    if isinstance(device, int) or (isinstance(device, torch.device) and device.type == "cuda"):
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        return torch.device("cpu")
    return device


class CudaToCpu(torch.overrides.TorchFunctionMode):
    """Tensor factories, ``Tensor.cuda`` and ``Tensor.to`` with CUDA devices give CPU tensors."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:
            kwargs["device"] = _cpu_device(kwargs["device"])
        kwargs.pop("pin_memory", None)
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to and len(args) > 1 and not isinstance(args[1], torch.dtype):
            args = (args[0], _cpu_device(args[1]), *args[2:])
        return func(*args, **kwargs)


class NoStream:
    """A CUDA stream or event on the CPU: every operation is already in order."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):  # wait_stream, wait_event, record, synchronize, query, ...
        return lambda *args, **kwargs: True

    def record_event(self, *args, **kwargs) -> NoStream:
        """An event recorded on the stream (MoE's token dispatcher synchronizes on it)."""
        return NoStream()


_CUDA_API = {
    "current_device": lambda: 0,
    "synchronize": lambda *a, **k: None,
    "empty_cache": lambda: None,
    "current_stream": lambda *a, **k: NoStream(),
    "default_stream": lambda *a, **k: NoStream(),
    "Stream": NoStream,
    "Event": NoStream,
    "stream": lambda *a, **k: contextlib.nullcontext(),
    "memory_allocated": lambda *a, **k: 0,
    "max_memory_allocated": lambda *a, **k: 0,
    "memory_reserved": lambda *a, **k: 0,
    "max_memory_reserved": lambda *a, **k: 0,
    "reset_peak_memory_stats": lambda *a, **k: None,
    "get_rng_state": lambda *a, **k: torch.get_rng_state(),
    "set_rng_state": lambda state, *a, **k: torch.set_rng_state(state),
    "manual_seed": lambda seed: None,  # (torch.manual_seed seeds the CPU generator)
    "manual_seed_all": lambda seed: None,
}

CUDA_TYPE = {torch.float32: "torch.cuda.FloatTensor", torch.float16: "torch.cuda.HalfTensor",
              torch.bfloat16: "torch.cuda.BFloat16Tensor"}


@contextlib.contextmanager
def _one_device():
    """``torch.cuda.device_count`` 1 and ``set_device`` a no-op, for the block."""
    saved = torch.cuda.device_count, torch.cuda.set_device
    torch.cuda.device_count, torch.cuda.set_device = (lambda: 1), (lambda *a, **k: None)
    try:
        yield
    finally:
        torch.cuda.device_count, torch.cuda.set_device = saved


def _patch_initialize() -> None:
    training, init = _target("megatron.training.training", "initialize_megatron")

    @functools.wraps(init)
    def initialize_megatron(*args, **kwargs):
        kwargs["allow_no_cuda"] = True
        with _one_device():
            return init(*args, **kwargs)

    training.initialize_megatron = _mark(initialize_megatron, "initialize")


def _patch_jit_warmup() -> None:
    training, _ = _target("megatron.training.training", "set_jit_fusion_options")
    training.set_jit_fusion_options = _mark(lambda *a, **k: None, "jit_warmup")


def _patch_device_arch() -> None:
    arguments, _ = _target("megatron.training.arguments", "get_device_arch_version")
    arguments.get_device_arch_version = _mark(lambda: 0, "device_arch")
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")


def _patch_devices() -> None:
    CudaToCpu().__enter__()  # (never left: the rest of the process runs on the CPU)


def _patch_cuda_api() -> None:
    for name, fn in _CUDA_API.items():
        setattr(torch.cuda, name, fn)


def _patch_rng_tracker() -> None:
    random, _ = _target("megatron.core.tensor_parallel.random", "_get_cuda_rng_state")
    _target("megatron.core.tensor_parallel.random", "_set_cuda_rng_state")
    random._get_cuda_rng_state = _mark(lambda *a, **k: torch.get_rng_state(), "rng_tracker")
    random._set_cuda_rng_state = _mark(lambda state, *a, **k: torch.set_rng_state(state),
                                       "rng_tracker")


def _patch_tensor_types() -> None:
    cpu_type = torch.Tensor.type

    def type_(self, *args, **kwargs):
        if args or kwargs:
            return cpu_type(self, *args, **kwargs)
        return CUDA_TYPE.get(self.dtype, cpu_type(self))

    torch.Tensor.type = _mark(type_, "tensor_types")


def _patch_moe_splits() -> None:
    dispatcher, move = _target("megatron.core.transformer.moe.token_dispatcher",
                               "maybe_move_tensor_to_cpu")

    @functools.wraps(move)
    def maybe_move_tensor_to_cpu(tensor, as_numpy: bool = False, record_stream: bool = False):
        if as_numpy and torch.is_tensor(tensor):  # what the GPU path hands the all-to-all
            return tensor.numpy()
        return move(tensor, as_numpy=as_numpy, record_stream=record_stream)

    dispatcher.maybe_move_tensor_to_cpu = _mark(maybe_move_tensor_to_cpu, "moe_splits")


def _patch_adam_step() -> None:
    distrib, optimizer_cls = _target("megatron.core.optimizer.distrib_optimizer",
                                     "DistributedOptimizer")
    if distrib.HAVE_APEX_OR_TE:  # TE's or apex's FusedAdam keeps the step in its param groups
        return
    state_dict = optimizer_cls.state_dict

    @functools.wraps(state_dict)
    def state_dict_(self):
        inner = self.optimizer
        if len(inner.state) or not any(g["params"] for g in inner.param_groups):
            return state_dict(self)
        first = next(p for g in inner.param_groups for p in g["params"])
        inner.state[first] = {"step": torch.tensor(0.0)}  # (only the step is read)
        try:
            return state_dict(self)
        finally:
            del inner.state[first]

    set_states = optimizer_cls._set_main_param_and_optimizer_states

    @functools.wraps(set_states)
    def set_states_(self, model_param, tensors):
        return set_states(self, model_param, {**tensors, "step": None})  # (None: not copied)

    load_state_dict = optimizer_cls.load_state_dict

    @functools.wraps(load_state_dict)
    def load_state_dict_(self, state_dict):
        load_state_dict(self, state_dict)
        for state in self.optimizer.state.values():  # one step tensor per parameter
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].clone()

    optimizer_cls.state_dict = _mark(state_dict_, "adam_step")
    optimizer_cls.load_state_dict = _mark(load_state_dict_, "adam_step")
    optimizer_cls._set_main_param_and_optimizer_states = _mark(set_states_, "adam_step")


def _patch_fp32_shards() -> None:
    _, optimizer_cls = _target("megatron.core.optimizer.distrib_optimizer",
                               "DistributedOptimizer")
    name = "_set_main_param_and_optimizer_states"
    if not hasattr(optimizer_cls, name):
        raise CudaPatchError(f"wlb.megatron.cpu_loop: DistributedOptimizer.{name} is gone "
                             f"(megatron-core {_version()}; written for {SUPPORTED}x)")
    setattr(optimizer_cls, name, _mark(torch.no_grad()(getattr(optimizer_cls, name)),
                                       "fp32_shards"))


PATCHES = {
    "initialize": _patch_initialize,
    "jit_warmup": _patch_jit_warmup,
    "device_arch": _patch_device_arch,
    "devices": _patch_devices,
    "cuda_api": _patch_cuda_api,
    "rng_tracker": _patch_rng_tracker,
    "tensor_types": _patch_tensor_types,
    "moe_splits": _patch_moe_splits,
    "adam_step": _patch_adam_step,
    "fp32_shards": _patch_fp32_shards,
}


def apply(force: bool = False) -> list[str]:
    """Patch Megatron-LM's loop for the CPU when CUDA is unavailable (idempotent). Returns the
    patches applied ([] on a GPU). Raises :class:`CudaPatchError` (one line) when the installed
    megatron-core is not 0.19 or a target moved."""
    from wlb.megatron import wheel

    wheel.apply()
    if _APPLIED or (torch.cuda.is_available() and not force):
        return list(_APPLIED)
    if not _version().startswith(SUPPORTED):
        raise CudaPatchError(f"wlb.megatron.cpu_loop supports megatron-core {SUPPORTED}x, found "
                             f"{_version()}: re-check its patches before raising the pin")
    for name, patch in PATCHES.items():
        patch()
        _APPLIED.append(name)
    return list(_APPLIED)
