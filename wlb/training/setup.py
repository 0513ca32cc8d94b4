"""Build everything a run needs from its configuration: groups, data, model, optimizer, packer.

Every megatron-core object is made through ``wlb.megatron`` (the one package that imports it);
:func:`build_schedule` needs no torch.distributed, so the simulator's replay rebuilds a run's
plans from its flags alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from wlb.config import ConfigError, WLBConfig, cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.kernels import resolve_backend
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, StrategyChooser
from wlb.data.sources import DocumentSource
from wlb.megatron import cpu_shim
from wlb.packing.base import default_max_tokens
from wlb.packing.run_packer import build_run_packer
from wlb.packing.schedule import PlanSchedule
from wlb.parallel import ParallelLayout
from wlb.run_config import ModelConfig, RunConfig
from wlb.training.documents import RunDocuments, build_documents

if TYPE_CHECKING:
    from wlb.megatron.groups import Groups
    from wlb.megatron.model import DistributedDataParallel
    from wlb.megatron.optim import MegatronOptimizer, OptimizerParamScheduler
    from wlb.megatron.transformer import TransformerConfig



@dataclass
class Run:
    """Everything built for a run (explicit; nothing global beyond megatron's parallel_state).

    Attributes:
        cfg: the run's configuration.
        groups: this process's ranks and process groups.
        documents: the datasets and their train / valid views.
        source: the train view (what the plans' document ids index).
        config: megatron's TransformerConfig (carries the grad-sync hooks).
        model: the DDP-wrapped model chunks (one per virtual pipeline stage).
        optimizer, scheduler: megatron's optimizer and LR schedule.
        schedule: the per-iteration plans.
        cost: the cost model the packer and the predictions use.
        chooser: the CP strategy of each micro-batch.
        packer_info: the packer and its outlier thresholds (logged, checkpointed).
        warnings: options that have no effect here (logged once).
        attention_kernel: the resolved attention kernel.
        device: where this rank's model and micro-batches live.
        tokens_trained: tokens of every iteration so far (checkpointed; the validation rows'
            x axis).
        elastic: elastic CP's groups, cost and strategies (``wlb.training.elastic``), or None.
        packer_max_tokens: S_max, the largest micro-batch in tokens.
    """

    cfg: RunConfig
    groups: Groups
    documents: RunDocuments
    source: DocumentSource
    config: TransformerConfig
    model: list[DistributedDataParallel]
    optimizer: MegatronOptimizer
    scheduler: OptimizerParamScheduler
    schedule: PlanSchedule
    cost: CostModel
    chooser: StrategyChooser
    packer_info: dict
    warnings: list[str]
    attention_kernel: str
    device: torch.device
    tokens_trained: int = 0
    elastic: object = None
    packer_max_tokens: int = 0

    @property
    def wlb(self) -> WLBConfig:
        return self.cfg.wlb


def init_distributed(backend: str | None) -> None:
    """Join the job's process group (torchrun's environment), or make a one-process group."""
    if dist.is_initialized():
        return
    alone = "WORLD_SIZE" not in os.environ and "MASTER_PORT" not in os.environ
    defaults = [("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")]
    if not alone:  # (a partial environment: the rendezvous address it lacks)
        defaults += [("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")]
    for k, v in defaults:
        os.environ.setdefault(k, v)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if alone:  # a plain `python pretrain_gpt_wlb.py`: an in-process store, no port to collide
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        return
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        dist.init_process_group(backend)
        return
    # Under torchrun, a restarted job (--max-restarts) rendezvouses through the same store as
    # the attempt that died, and its process groups (megatron's, created again under the same
    # names) would read the dead ranks' addresses from it and fail to connect: every attempt
    # gets its own key space.
    store, rank, world_size = next(dist.rendezvous("env://"))
    dist.init_process_group(backend, store=dist.PrefixStore(f"wlb/attempt_{attempt}", store),
                            rank=rank, world_size=world_size)


def run_device() -> torch.device:
    """Where this rank's model, micro-batches and collective buffers live: its GPU under NCCL
    (``init_distributed`` set it from LOCAL_RANK), else the CPU (gloo)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def attention_kernel(backend: str, device: torch.device, dtype) -> str:
    """Resolve ``--attention-backend`` for this process's device and dtype, or exit naming why."""
    try:
        return resolve_backend(backend, torch.empty(0, device=device, dtype=dtype))
    except (RuntimeError, ValueError) as e:
        raise ConfigError(str(e)) from None


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


def build(cfg: RunConfig) -> Run:
    """Initialise torch.distributed and megatron, and build the run ``cfg`` describes."""
    from wlb.megatron import groups as mgroups
    from wlb.megatron.model import build_model_chunks, init_layout_independent, wrap_ddp
    from wlb.megatron.optim import attach_grad_sync, build_optimizer, build_scheduler
    from wlb.megatron.transformer import transformer_config

    m, par, tr = cfg.model, cfg.parallel, cfg.training
    torch.set_num_threads(tr.threads)
    init_distributed(par.distributed_backend)
    cpu_shim.apply()
    layout = cfg.layout(dist.get_world_size())
    groups = mgroups.initialize(layout, tr.seed)
    documents = build_documents(cfg.data, m, tr.seed, stock_blend(cfg))
    vocab = padded_vocab(m, documents.source.vocab_size)
    if vocab % layout.tp:
        raise SystemExit(f"padded vocab {vocab} (--make-vocab-size-divisible-by "
                         f"{m.make_vocab_size_divisible_by}) is not "
                         f"divisible by --tensor-model-parallel-size {layout.tp}")
    config = transformer_config(m, layout)
    device = run_device()
    kernel = attention_kernel(m.attention_backend, device, config.params_dtype)
    tied = not m.untie_embeddings_and_output_weights
    max_tokens = m.max_position_embeddings or cfg.wlb.max_tokens or default_max_tokens(
        m.seq_length)
    rope = m.rotary_base if m.position_embedding_type == "rope" else None
    chunks = build_model_chunks(config, groups, vocab_size=vocab, max_seq_length=max_tokens,
                                rotary_base=rope, tie_embeddings=tied,
                                attention_backend=kernel, rotary_percent=m.rotary_percent)
    init_layout_independent(chunks, seed=tr.seed, std=m.init_method_std,
                            num_layers=m.num_layers, tp_rank=groups.tp_rank,
                            tp_size=layout.tp, tied=tied)
    if device.type == "cuda":  # built on the CPU (use_cpu_initialization), as Megatron-LM does
        for c in chunks:
            c.cuda(device)
    model = wrap_ddp(config, chunks, use_distributed_optimizer=par.use_distributed_optimizer,
                     overlap_grad_reduce=par.overlap_grad_reduce)
    attach_grad_sync(config, model)
    optimizer = build_optimizer(model, config, tr,
                                use_distributed_optimizer=par.use_distributed_optimizer)
    scheduler = build_scheduler(optimizer, tr)
    cost = make_cost_model(m, cfg.wlb, layout, vocab)
    schedule, info, chooser = build_schedule(cfg, layout, documents.train, cost,
                                             documents.train_blend)
    elastic = None
    if cfg.wlb.elastic_cp:
        from wlb.megatron.elastic import build_elastic_groups
        from wlb.training.elastic import build_runtime, comm_price, split_efficiency

        elastic = build_runtime(build_elastic_groups(groups), cost, chooser,
                                comm_price(cfg.wlb.elastic_comm_coef, cfg.wlb.cost_model),
                                split_efficiency(cfg.wlb.cost_model))
    return Run(cfg, groups, documents, documents.train, config, model, optimizer, scheduler,
               schedule, cost, chooser, info, cfg.wlb.no_effect_warnings(layout.cp)
               + stale_calibration(cfg.wlb.cost_model, kernel), kernel,
               device, elastic=elastic, packer_max_tokens=schedule.packer.max_tokens)
