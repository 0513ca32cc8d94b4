"""WLB's side of a run, built from its configuration: the cost model and the plan schedule.

What megatron lacks: a packer and the CP strategy chooser. Nothing here needs torch.distributed,
so every rank (``wlb.megatron.wlb_data``), ``tools/bench_data_path.py`` and the simulator's replay
(``tools/simulate_cluster.py validate``) build the same schedule from the same flags.
"""

from __future__ import annotations

import json

from wlb.config import ConfigError, WLBConfig, cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, StrategyChooser
from wlb.data.sources import DocumentSource
from wlb.packing.run_packer import build_run_packer
from wlb.packing.schedule import PlanSchedule
from wlb.parallel import ParallelLayout
from wlb.run_config import ModelConfig, RunConfig


def padded_vocab(model: ModelConfig, vocab_size: int) -> int:
    """Vocabulary rounded up to --make-vocab-size-divisible-by, as megatron pads it."""
    mult = model.make_vocab_size_divisible_by
    return -(-vocab_size // mult) * mult


def make_cost_model(model: ModelConfig, wlb: WLBConfig, layout: ParallelLayout,
                    vocab: int, **moe) -> CostModel:
    """``--wlb-cost-model``'s, else the analytic FLOPs of ``model`` (``moe``: its experts,
    ``CostModel.from_flops``'s ``num_experts``, ``moe_router_topk``, ``moe_ffn_hidden_size``)."""
    if wlb.cost_model:
        return CostModel.from_json(wlb.cost_model)
    return CostModel.from_flops(
        num_layers=model.num_layers, hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size, num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups, vocab_size=vocab, swiglu=model.swiglu,
        tensor_parallel_size=layout.tp, context_parallel_size=layout.cp, **moe,
    )


def _table_in(cost_model: str | None) -> str | None:
    """``cost_model`` when that calibration file carries a ``kernel_table``, else None."""
    if not cost_model:
        return None
    with open(cost_model, encoding="utf-8") as f:
        return cost_model if isinstance(json.load(f).get("kernel_table"), dict) else None


def stale_calibration(cost_model: str | None, kernel: str) -> list[str]:
    """A warning when ``cost_model`` was calibrated on another revision of the ``torch`` kernel
    than this build's (``wlb.cost_model.kernel_revision``) and the run uses that kernel; else
    nothing."""
    from wlb.cost_model import kernel_revision
    from wlb.cp.torch_kernel import REVISION

    if not cost_model or kernel != "torch":
        return []
    if (got := kernel_revision(cost_model)) == REVISION:
        return []
    return [f"{cost_model} was calibrated on torch-kernel revision {got}, this build runs "
            f"revision {REVISION}, whose attention is priced differently: recalibrate it "
            "(tools/calibrate_cost_model.py)"]


def stock_blend(cfg: RunConfig) -> bool:
    """Whether the run's train view is laid out for stock Megatron's sample-level blend."""
    return cfg.wlb.packing == "megatron" and cfg.wlb.shuffle


def build_schedule(cfg: RunConfig, layout: ParallelLayout, train: DocumentSource,
                   cost: CostModel, blend=None) -> tuple[PlanSchedule, dict, StrategyChooser]:
    """The run's plan schedule and CP strategy chooser (no torch.distributed needed: every rank,
    and ``tools/simulate_cluster.py validate``, builds the same ones from the same flags).

    Returns:
        (PlanSchedule, packer info dict, StrategyChooser).
    """
    wlb, seed = cfg.wlb, cfg.training.seed
    lengths = train.lengths
    try:
        # 'auto' thresholds are kept beside the (first) dataset, by a digest of the lengths
        packer, info = build_run_packer(lengths, layout.global_batch_size,
                                        cfg.model.seq_length, cost, seed,
                                        cache_prefix=cfg.data.blend[0][0] if cfg.data.data_path
                                        else None,
                                        **wlb.packer_options())
    except ValueError as e:  # packer options that do not fit this run
        raise ConfigError(f"WLB packer: {e}") from None
    schedule = PlanSchedule(lengths, packer, layout.dp, shuffle=wlb.shuffle, seed=seed,
                            balance_dp=wlb.packing != "megatron",
                            num_samples=cfg.training.train_iters * layout.global_batch_size,
                            blend=blend, megatron_batches=wlb.global_batch == "megatron")
    table = None
    if wlb.cp_sharding.startswith("adaptive") and (layout.cp > 1 or wlb.elastic_cp):
        table = KernelTable.from_json(wlb.kernel_table or _table_in(wlb.cost_model)
                                      or DEFAULT_TABLE)
    # (elastic CP: a group of g ranks chooses with the same candidates and table for CP = g)
    return schedule, info, StrategyChooser(cp_candidates(wlb.cp_sharding), layout.cp, table)
