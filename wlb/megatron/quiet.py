"""What importing and running megatron-core prints or costs that our users need not see.

* :func:`deferred_compile` -- at import, megatron/core/jit.py binds ``jit_fuser = torch.compile``
  and about 20 fusion functions (fusions/, activations.py, torch_norm.py, attention.py) are
  decorated with it, which imports torch._dynamo and torch._inductor: ~2 s of CPU in every
  process, for fusions our spec does not call. While ``import megatron.core`` runs
  (``wlb.megatron``'s first act), ``torch.compile`` returns a wrapper that compiles on the first
  call instead, with the same arguments, so nothing changes but when the cost is paid.
* :func:`quiet_cuda_home` -- PyPI's torch is a CUDA build; megatron-core imports
  ``torch.utils.cpp_extension``, which warns "No CUDA runtime is found, using CUDA_HOME=..." at
  import on any machine with ``nvcc`` on its PATH: in every process, and a bad-input error would
  no longer be one line.

* :func:`drop_notices` -- megatron-core 0.19 logs deprecation notices about its own internals
  at WARNING: "GPTModel IS DEPRECATED" (Megatron-LM's own pretrain_gpt.py still builds it),
  "MCore's async save is deprecated" (its synchronous save goes through that path) and
  "load_common is deprecated" (reading a checkpoint of megatron-core <= 0.18). Each is dropped
  by a filter on the logger that emits it; every other message passes.

The first two do nothing when CUDA is available.
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch


def _compile_on_first_call(compile_fn):
    """``torch.compile``'s signature; the compilation itself waits for the first call."""

    def deferred(model=None, **kwargs):
        if model is None:  # used as @torch.compile(...)
            return lambda fn: deferred(fn, **kwargs)
        compiled = None

        @functools.wraps(model)
        def call(*args, **kw):
            nonlocal compiled
            if compiled is None:
                compiled = compile_fn(model, **kwargs)
            return compiled(*args, **kw)

        return call

    return deferred


@contextlib.contextmanager
def deferred_compile():
    """Within the block (CPU only), ``torch.compile`` compiles at the first call, not at once."""
    if torch.cuda.is_available():
        yield
        return
    real = torch.compile
    torch.compile = _compile_on_first_call(real)
    try:
        yield
    finally:
        torch.compile = real


def quiet_cuda_home() -> None:
    """Without CUDA, silence ``torch.utils.cpp_extension``'s import-time CUDA_HOME warning."""
    if not torch.cuda.is_available():
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


#: (logger, the start of a message it logs that is dropped)
NOTICES = (
    ("megatron.core.models.gpt.gpt_model", "GPTModel IS DEPRECATED"),
    ("megatron.core.dist_checkpointing.strategies.torch", "MCore's async save is deprecated"),
    ("megatron.core.dist_checkpointing.strategies.common", "load_common is deprecated"),
)


class _DropNotice(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def drop_notices() -> None:
    """Install the :data:`NOTICES` filters (idempotent)."""
    for name, prefix in NOTICES:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.prefix == prefix for f in log.filters):
            log.addFilter(_DropNotice(prefix))
