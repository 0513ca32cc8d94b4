"""Run megatron-core 0.19 on CPU + gloo: the one place that patches its CUDA-only call sites.

megatron-core hard-codes CUDA in a handful of places that a CPU run still reaches (see
``../shared/notes/megatron_core_cpu.md``). :func:`apply` fixes them **only when CUDA is not
available** (on a GPU machine it does nothing), and only for megatron-core 0.19.x, whose behaviour
it was written against (files of ``megatron/core``; a version bump must re-check them). Each patch
names the call sites it covers:

* ``torch_proxy`` -- inside the listed megatron modules the name ``torch`` is re-bound to a proxy
  that maps ``device="cuda"`` to CPU in tensor factories and gives ``torch.cuda`` CPU meanings
  (``current_device`` -> "cpu", ``synchronize`` -> no-op, RNG state -> the CPU generator,
  streams and events -> objects whose every method is a no-op). Covers the ``zeros(device=
  "cuda")`` buffers of pipeline_parallel/schedules.py, the shape exchange and ``synchronize`` of
  p2p_communication.py, the grad buffers and their stream waits in
  distributed/param_and_grad_buffer.py, utils.py's GlobalMemoryBuffer and no-Apex l2 norm, the
  optimizers' buffers (optimizer.py, clip_grads.py, distrib_optimizer.py), the RNG tracker
  (tensor_parallel/random.py), parallel_state.py and, for ``dist_checkpointing``
  (``--ckpt-format torch_dist``), the ``synchronize`` / ``current_device`` calls of
  strategies/filesystem_async.py, state_dict_saver.py and fully_parallel.py.
* ``rng_state`` -- random.py's ``_get/_set_cuda_rng_state`` read/write the CPU generator, so
  ``model_parallel_cuda_manual_seed`` and ``get_cuda_rng_tracker().fork()`` work.
* ``tensor_types`` -- the distributed optimizer's main-parameter groups, the bf16 optimizer's
  ``__init__`` and clip_grads.py check ``param.type() == 'torch.cuda.FloatTensor'``; while those
  functions run, ``Tensor.type()`` reports the CUDA name of a CPU tensor.
* ``p2p_shapes`` -- p2p_communication.py exchanges micro-batch shapes (variable sequence lengths)
  with one ``batch_isend_irecv`` whatever ``batch_p2p_comm`` says. With PP=2 the previous and
  next stage are the same rank, and gloo matches same-peer messages in posting order, so under the
  interleaved schedule (sends and receives in both directions at once) the forward and backward
  shapes are swapped and the job dies with a size mismatch. Our version tags each message with
  its direction, so gloo matches them by tag.
* ``tied_embedding`` -- language_module.py calls ``weight.data.cuda()`` for tied embeddings with
  PP > 1; while ``setup_embeddings_and_output_layer`` runs, ``Tensor.cuda`` is the identity. The
  same for the distributed optimizer's ``get_parameter_state_dp_zero`` (its state gathered for a
  ``fully_reshardable`` torch_dist checkpoint).

Not covered because our spec never reaches them: transformer/utils.py (masks of the local
``DotProductAttention``, replaced by our attention) and rope_utils.py (megatron's RoPE under CP;
our attention applies RoPE itself).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import types

import torch

from wlb.megatron.cpu_loop import CUDA_TYPE, NoStream

SUPPORTED = "0.19."
_APPLIED = False

_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.pipeline_parallel.p2p_communication",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.distributed.distributed_data_parallel",
    "megatron.core.distributed.finalize_model_grads",
    "megatron.core.utils",
    "megatron.core.parallel_state",
    "megatron.core.tensor_parallel.random",
    "megatron.core.tensor_parallel.layers",
    "megatron.core.tensor_parallel.mappings",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.dist_checkpointing.strategies.filesystem_async",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.dist_checkpointing.strategies.fully_parallel",
)
_FACTORIES = ("zeros", "ones", "empty", "tensor", "full", "arange", "zeros_like", "empty_like")


def _cpu_device(device):
    if device is None:
        return None
    if isinstance(device, int) or "cuda" in str(device):
        return "cpu"
    return device


class _CudaOnCPU(types.SimpleNamespace):
    """``torch.cuda`` as seen from a patched megatron module on a machine without CUDA."""

    def __getattr__(self, name):
        return getattr(torch.cuda, name)


def _make_cuda_namespace() -> _CudaOnCPU:
    return _CudaOnCPU(
        is_available=lambda: False,
        current_stream=lambda *a, **k: NoStream(),
        Stream=NoStream,
        Event=NoStream,
        stream=lambda *a, **k: contextlib.nullcontext(),
        current_device=lambda: "cpu",
        synchronize=lambda *a, **k: None,
        empty_cache=lambda: None,
        get_rng_state=lambda *a, **k: torch.get_rng_state(),
        set_rng_state=lambda state, *a, **k: torch.set_rng_state(state),
        manual_seed=lambda seed: torch.manual_seed(seed),
        device_count=lambda: 0,
    )


class _TorchOnCPU(types.ModuleType):
    """``torch`` with CUDA device arguments mapped to CPU (everything else delegated)."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.cuda = _make_cuda_namespace()
        for name in _FACTORIES:
            setattr(self, name, self._wrap(getattr(torch, name)))

    @staticmethod
    def _wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if "device" in kwargs:
                kwargs["device"] = _cpu_device(kwargs["device"])
            kwargs.pop("pin_memory", None)
            return fn(*args, **kwargs)

        return inner

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def _cuda_type_names():
    orig = torch.Tensor.type

    def type_(self, *args, **kwargs):
        if args or kwargs:
            return orig(self, *args, **kwargs)
        return CUDA_TYPE.get(self.dtype, orig(self))

    torch.Tensor.type = type_
    try:
        yield
    finally:
        torch.Tensor.type = orig


@contextlib.contextmanager
def _identity_cuda():
    orig = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = orig


def _scoped(fn, ctx):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with ctx():
            return fn(*args, **kwargs)

    inner.__wlb_shim__ = True
    return inner


_TAG_FORWARD, _TAG_BACKWARD = 0x5751, 0x5752


def _communicate_shapes(self, tensor_send_next, tensor_send_prev, recv_prev, recv_next):
    """Shape exchange with direction tags (replaces P2PCommunicator._communicate_shapes)."""
    dist = torch.distributed
    recv_prev_t = torch.empty(3, dtype=torch.int64) if recv_prev else None
    recv_next_t = torch.empty(3, dtype=torch.int64) if recv_next else None
    plan = (  # (op, tensor, peer, tag): forward-direction messages, then backward-direction ones
        (dist.isend, tensor_send_next, self.next_rank, _TAG_FORWARD),
        (dist.irecv, recv_prev_t, self.prev_rank, _TAG_FORWARD),
        (dist.isend, tensor_send_prev, self.prev_rank, _TAG_BACKWARD),
        (dist.irecv, recv_next_t, self.next_rank, _TAG_BACKWARD),
    )
    ops = []
    for op, t, peer, tag in plan:
        if t is None:
            continue
        if op is dist.isend:  # send the shape, not the tensor
            t = torch.tensor(t.size(), dtype=torch.int64)
        ops.append(dist.P2POp(op, t, peer, self.pp_group, tag))
    if ops:
        for req in dist.batch_isend_irecv(ops):
            req.wait()
    return (
        recv_prev_t.tolist() if recv_prev_t is not None else [0, 0, 0],
        recv_next_t.tolist() if recv_next_t is not None else [0, 0, 0],
    )


def check_version() -> str:
    import megatron.core

    version = megatron.core.__version__
    if not version.startswith(SUPPORTED):
        raise RuntimeError(
            f"wlb.megatron.cpu_shim supports megatron-core {SUPPORTED}x, found {version}; "
            "re-check the call sites listed in its docstring before raising the pin"
        )
    return version


def apply(force: bool = False) -> bool:
    """Patch megatron-core for CPU if CUDA is unavailable (idempotent). Returns whether it did."""
    global _APPLIED
    if _APPLIED:
        return True
    if torch.cuda.is_available() and not force:
        return False
    check_version()
    proxy = _TorchOnCPU()
    for name in _MODULES:
        importlib.import_module(name).torch = proxy

    random = importlib.import_module("megatron.core.tensor_parallel.random")
    random._get_cuda_rng_state = lambda *a, **k: torch.get_rng_state()
    random._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)

    distopt = importlib.import_module("megatron.core.optimizer.distrib_optimizer")
    cls = distopt.DistributedOptimizer
    cls._build_model_and_main_param_groups = staticmethod(
        _scoped(cls._build_model_and_main_param_groups, _cuda_type_names)
    )
    cls.get_parameter_state_dp_zero = _scoped(cls.get_parameter_state_dp_zero, _identity_cuda)
    clip = importlib.import_module("megatron.core.optimizer.clip_grads")
    optim = importlib.import_module("megatron.core.optimizer.optimizer")
    f16 = optim.Float16OptimizerWithFloat16Params
    f16.__init__ = _scoped(f16.__init__, _cuda_type_names)
    scoped_clip = _scoped(clip.clip_grad_by_total_norm_fp32, _cuda_type_names)
    clip.clip_grad_by_total_norm_fp32 = scoped_clip
    optim.clip_grad_by_total_norm_fp32 = scoped_clip

    p2p = importlib.import_module("megatron.core.pipeline_parallel.p2p_communication")
    p2p.P2PCommunicator._communicate_shapes = _communicate_shapes

    lm = importlib.import_module("megatron.core.models.common.language_module.language_module")
    lm.LanguageModule.setup_embeddings_and_output_layer = _scoped(
        lm.LanguageModule.setup_embeddings_and_output_layer, _identity_cuda
    )
    _APPLIED = True
    return True
