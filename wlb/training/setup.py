"""Build everything a run needs from parsed arguments: groups, data, model, optimizer, packer."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from wlb.config import ConfigError, WLBConfig, cp_candidates
from wlb.cost_model import CostModel
from wlb.cp.kernels import resolve_backend
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, StrategyChooser
from wlb.data.sources import MockDocuments
from wlb.megatron import cpu_shim
from wlb.packing.base import default_max_tokens
from wlb.packing.run_packer import build_run_packer
from wlb.packing.schedule import PlanSchedule
from wlb.parallel import ParallelLayout

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_LENGTHS = os.path.join(ROOT, "data", "doc_lengths", "doc_lengths_wlbllm.json")


@dataclass
class Run:
    """Everything built for a run (explicit; nothing global beyond megatron's parallel_state)."""

    args: object
    wlb: WLBConfig
    groups: object
    source: object
    config: object
    model: list
    optimizer: object
    scheduler: object
    schedule: PlanSchedule
    cost: CostModel
    chooser: StrategyChooser
    packer_info: dict
    warnings: list
    attention_kernel: str
    device: torch.device


def init_distributed(backend: str | None) -> None:
    if dist.is_initialized():
        return
    for k, v in (("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"),
                 ("MASTER_PORT", "29511"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(k, v)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend)


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


def build_source(args):
    if args.mock_data:
        path = args.mock_length_sample or DEFAULT_LENGTHS
        try:
            with open(path) as f:
                sample = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--mock-length-sample {path}: {e}") from None
        return MockDocuments(sample, args.mock_num_docs, vocab_size=args.vocab_size or 256,
                             seed=args.seed, scale=args.mock_length_scale)
    from wlb.megatron.indexed import IndexedDocuments

    return IndexedDocuments(args.data_path)


def train_documents(source, split_weights) -> np.ndarray:
    """Document lengths of the train split (the first ``w0/sum`` of the documents, file order)."""
    n = len(source.lengths)
    n_train = max(1, int(round(n * split_weights[0] / sum(split_weights))))
    return source.lengths[:n_train]


def parallel_layout(args, world_size: int) -> ParallelLayout:
    """The validated layout the flags describe for ``world_size`` processes."""
    return ParallelLayout(
        world_size=world_size, tp=args.tensor_model_parallel_size,
        pp=args.pipeline_model_parallel_size, cp=args.context_parallel_size, vpp=args.vpp,
        num_layers=args.num_layers, num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups, global_batch_size=args.global_batch_size,
        seq_length=args.seq_length, sequence_parallel=args.sequence_parallel,
    )


def padded_vocab(args, vocab_size: int) -> int:
    """Vocabulary rounded up to --make-vocab-size-divisible-by, as megatron pads it."""
    mult = args.make_vocab_size_divisible_by
    return -(-vocab_size // mult) * mult


def make_cost_model(args, wlb: WLBConfig, layout: ParallelLayout, vocab: int) -> CostModel:
    if wlb.cost_model:
        return CostModel.from_json(wlb.cost_model)
    return CostModel.from_flops(
        num_layers=args.num_layers, hidden_size=args.hidden_size,
        ffn_hidden_size=args.ffn_hidden_size, num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups, vocab_size=vocab, swiglu=args.swiglu,
        tensor_parallel_size=layout.tp, context_parallel_size=layout.cp,
    )


def transformer_config(args, layout: ParallelLayout):
    from megatron.core.transformer import TransformerConfig

    dtype = torch.bfloat16 if args.bf16 else torch.float32
    return TransformerConfig(
        num_layers=args.num_layers,
        hidden_size=args.hidden_size,
        ffn_hidden_size=args.ffn_hidden_size,
        num_attention_heads=args.num_attention_heads,
        num_query_groups=args.num_query_groups,
        tensor_model_parallel_size=layout.tp,
        pipeline_model_parallel_size=layout.pp,
        virtual_pipeline_model_parallel_size=layout.vpp if layout.vpp > 1 else None,
        context_parallel_size=layout.cp,
        sequence_parallel=layout.sequence_parallel,
        normalization=args.normalization,
        gated_linear_unit=args.swiglu,
        activation_func=torch.nn.functional.silu if args.swiglu else torch.nn.functional.gelu,
        add_bias_linear=not args.disable_bias_linear,
        hidden_dropout=args.hidden_dropout,
        attention_dropout=0.0,
        init_method_std=args.init_method_std,
        perform_initialization=True,  # sets the TP partition attributes; values then replaced
        # by init_layout_independent
        use_cpu_initialization=True,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=args.bf16,
        variable_seq_lengths=True,  # WLB micro-batches differ in length
        moe_token_dispatcher_type="alltoall",  # required with variable_seq_lengths (0.16)
        calculate_per_token_loss=True,  # loss / global token count (repacking-invariant)
        # PP=2 with VPP and batched p2p on gloo swaps activations silently (see notes)
        batch_p2p_comm=not (layout.pp == 2 and layout.vpp > 1),
        bias_activation_fusion=False,
        masked_softmax_fusion=False,
        gradient_accumulation_fusion=False,
        recompute_granularity=args.recompute_granularity,
        recompute_method="uniform" if args.recompute_granularity else None,
        recompute_num_layers=1 if args.recompute_granularity else None,
    )


def _table_in(cost_model: str | None) -> str | None:
    """``cost_model`` when that calibration file carries a ``kernel_table``, else None."""
    if not cost_model:
        return None
    with open(cost_model, encoding="utf-8") as f:
        return cost_model if isinstance(json.load(f).get("kernel_table"), dict) else None


def build_schedule(args, wlb: WLBConfig, layout: ParallelLayout, source, cost: CostModel):
    """The run's plan schedule and CP strategy chooser (no torch.distributed needed: every rank,
    and ``tools/simulate_cluster.py --validate``, builds the same ones from the same flags).

    Returns:
        (PlanSchedule, packer info dict, StrategyChooser).
    """
    lengths = train_documents(source, args.split_weights)
    try:
        packer, info = build_run_packer(wlb, lengths, layout.global_batch_size,
                                        args.seq_length, cost, args.seed)
    except ValueError as e:  # packer options that do not fit this run
        raise ConfigError(f"WLB packer: {e}") from None
    schedule = PlanSchedule(lengths, packer, layout.dp, shuffle=wlb.shuffle, seed=args.seed,
                            balance_dp=wlb.packing != "megatron")
    table = None
    if wlb.cp_sharding.startswith("adaptive") and layout.cp > 1:
        table = KernelTable.from_json(wlb.kernel_table or _table_in(wlb.cost_model)
                                      or DEFAULT_TABLE)
    return schedule, info, StrategyChooser(cp_candidates(wlb.cp_sharding), layout.cp, table)


def build(args) -> Run:
    """Initialise torch.distributed and megatron, and build the run described by ``args``."""
    from megatron.core.distributed import finalize_model_grads
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from wlb.megatron import groups as mgroups
    from wlb.megatron.model import build_model_chunks, init_layout_independent, wrap_ddp

    wlb = WLBConfig.from_args(args)
    torch.set_num_threads(args.threads)
    init_distributed(args.distributed_backend)
    cpu_shim.apply()
    layout = parallel_layout(args, dist.get_world_size())
    groups = mgroups.initialize(layout, args.seed)
    source = build_source(args)
    vocab = padded_vocab(args, source.vocab_size)
    if vocab % layout.tp:
        raise SystemExit(f"padded vocab {vocab} (--make-vocab-size-divisible-by "
                         f"{args.make_vocab_size_divisible_by}) is not "
                         f"divisible by --tensor-model-parallel-size {layout.tp}")
    config = transformer_config(args, layout)
    device = run_device()
    kernel = attention_kernel(args.attention_backend, device, config.params_dtype)
    tied = not args.untie_embeddings_and_output_weights
    max_tokens = wlb.max_tokens or default_max_tokens(args.seq_length)
    rope = args.rotary_base if args.position_embedding_type == "rope" else None
    chunks = build_model_chunks(config, groups, vocab_size=vocab, max_seq_length=max_tokens,
                                rotary_base=rope, tie_embeddings=tied,
                                attention_backend=kernel)
    init_layout_independent(chunks, seed=args.seed, std=args.init_method_std,
                            num_layers=args.num_layers, tp_rank=groups.tp_rank,
                            tp_size=layout.tp, tied=tied)
    if device.type == "cuda":  # built on the CPU (use_cpu_initialization), as Megatron-LM does
        for c in chunks:
            c.cuda(device)
    model = wrap_ddp(config, chunks, use_distributed_optimizer=args.use_distributed_optimizer,
                     overlap_grad_reduce=args.overlap_grad_reduce)
    config.finalize_model_grads_func = finalize_model_grads
    no_sync = [m.no_sync for m in model]
    config.no_sync_func = no_sync if len(no_sync) > 1 else no_sync[0]
    opt_cfg = OptimizerConfig(
        optimizer="adam", lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2, adam_eps=args.adam_eps,
        clip_grad=args.clip_grad, bf16=args.bf16, params_dtype=config.params_dtype,
        use_distributed_optimizer=args.use_distributed_optimizer,
    )
    optimizer = get_megatron_optimizer(opt_cfg, model)
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0 if args.lr_warmup_iters else args.lr, max_lr=args.lr,
        min_lr=args.min_lr, lr_warmup_steps=args.lr_warmup_iters,
        lr_decay_steps=args.lr_decay_iters, lr_decay_style=args.lr_decay_style,
        start_wd=args.weight_decay, end_wd=args.weight_decay, wd_incr_steps=args.train_iters,
        wd_incr_style="constant",
    )
    cost = make_cost_model(args, wlb, layout, vocab)
    schedule, info, chooser = build_schedule(args, wlb, layout, source, cost)
    return Run(args, wlb, groups, source, config, model, optimizer, scheduler, schedule, cost,
               chooser, info, wlb.no_effect_warnings(layout.cp), kernel, device)
