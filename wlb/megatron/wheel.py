"""What Megatron-LM's loop expects of a Megatron-LM checkout that megatron-core's wheel lacks.

Megatron-LM's ``initialize_megatron`` builds the dataset index helpers on rank 0 by running
``make -C .../megatron/core/datasets`` (``_compile_dependencies`` -> ``compile_helpers``). A
checkout has the Makefile; megatron-core's wheel ships the helpers built (``helpers_cpp``)
without it, so there ``make`` stops ("no makefile found") and megatron exits before training:
on a GPU as on the CPU. :func:`apply` makes ``compile_helpers`` a no-op where there is no Makefile
to run and the built helpers import (what the build would give); where a Makefile is, megatron
builds as it always does. Applied on every machine by :func:`wlb.megatron.cpu_loop.apply`.
"""

from __future__ import annotations

import os


def nothing_to_build(datasets_dir: str) -> bool:
    """Whether megatron's dataset folder ``datasets_dir`` has no Makefile and its helpers are
    built (a ``helpers_cpp`` extension module beside them)."""
    if os.path.exists(os.path.join(datasets_dir, "Makefile")):
        return False
    return any(name.startswith("helpers_cpp.") and name.endswith((".so", ".pyd"))
               for name in os.listdir(datasets_dir))


def apply() -> bool:
    """Skip the dataset helpers' build where megatron-core's wheel cannot run it (idempotent).
    Returns whether the build is skipped."""
    from megatron.core.datasets import utils

    if getattr(utils.compile_helpers, "__wlb_wheel_patch__", False):
        return True
    if not nothing_to_build(os.path.dirname(utils.__file__)):
        return False

    def compile_helpers() -> None:
        """(wlb.megatron.wheel) megatron-core's wheel ships the helpers built: nothing to do."""

    compile_helpers.__wlb_wheel_patch__ = True
    utils.compile_helpers = compile_helpers
    return True
