"""Every check of a run that needs no model, no process group and no GPU, run before them.

``pretrain_gpt_wlb.py`` calls :func:`preflight` on every rank before building anything, and
``scripts/pretrain_gpt.sh`` runs it once (``--preflight-only``) before starting torchrun, so a bad
flag, layout, data file or checkpoint is one line and exit status 2, with no traceback. Flag-only
checks live in ``wlb.training.arguments.validate``; these need the world size or the files.
"""

from __future__ import annotations

import os

from wlb.config import ConfigError
from wlb.cost_model import CostModel
from wlb.cp.selector import KernelTable
from wlb.run_config import RunConfig
from wlb.training.documents import build_documents


def preflight(cfg: RunConfig, world_size: int) -> None:
    """Raise a one-line error (LayoutError, ConfigError, CostModelError, IndexedDataError,
    DocumentsError, CheckpointError, DataError) for anything that would stop the run later."""
    layout = cfg.layout(world_size)
    wlb = cfg.wlb
    if wlb.elastic_cp and layout.dp * layout.cp == 1:
        raise ConfigError(f"--wlb-elastic-cp needs DP x CP > 1 ranks per pipeline stage to "
                          f"regroup; this layout has DP={layout.dp} x CP={layout.cp}")
    if wlb.cost_model:
        CostModel.from_json(wlb.cost_model)
    if wlb.kernel_table:
        try:
            KernelTable.from_json(wlb.kernel_table)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--wlb-kernel-table {wlb.kernel_table}: {e}") from None
    build_documents(cfg.data, cfg.model, cfg.training.seed)  # opens and checks the data files
    if cfg.checkpoint.load:
        from wlb.training.checkpoint import CheckpointError, check_checkpoint

        # under torchrun each rank checks its own file (not world_size^2 opens on a shared
        # filesystem); the launcher's single pre-flight process checks every rank's
        rank = os.environ.get("RANK")
        ranks = [int(rank)] if rank is not None else range(world_size)
        found = check_checkpoint(cfg.checkpoint.load, cfg, layout, ranks)
        if found is None and cfg.checkpoint.exit_on_missing_checkpoint:
            raise CheckpointError(f"--load {cfg.checkpoint.load}: no checkpoint there "
                                  "(--exit-on-missing-checkpoint)")
        if found is None and cfg.checkpoint.ckpt_convert_format:
            raise CheckpointError(f"--load {cfg.checkpoint.load}: no checkpoint there to "
                                  "convert")
