"""WLB's data path inside Megatron-LM's ``pretrain()``: its packer's micro-batches as megatron's
external data iterator (``--dataloader-type external``).

Every rank (every TP, CP and pipeline rank: each stage's attention needs the documents) builds the
same plans from the documents' lengths and the seed (``PlanSchedule``: packer, outlier queues,
DP dealing), then its own inputs for each iteration: a CP strategy per micro-batch, collated and
sharded for its CP rank (``wlb.host.step.prepare_step``), made one iteration ahead in a
background thread (``HostPrefetcher``, ``--wlb-host-prefetch``). megatron's schedule pulls this
DP rank's ``GBS / DP`` micro-batches per iteration, one ``MicroBatchInput`` each; under VPP each
model chunk has an iterator of its own over the same micro-batches (:class:`ChunkIterator`).

Elastic CP (``--wlb-elastic-cp``) regroups each slot's pieces over a pipeline stage's DP x CP
pool (``wlb.elastic.planner``, every rank the same plan): a rank's micro-batch is its group's
share, and :func:`cp_group_of` gives the forward step the group's process group, which travels
to WLB's attention in ``PackedSeqParams.cp_group``. megatron's per-token loss needs nothing
more: its gradient and token-count reductions already span the DP x CP pool.

Validation goes the same way over the valid split: stock Megatron's own valid samples (its
``GPTDataset`` order, emulated by ``wlb.packing.stock_samples``, for the samples megatron asks
for), one sample per micro-batch, sharded for CP, moving on between evaluations as megatron's
valid iterator does, so both arms evaluate the same tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import torch
from megatron.core import mpu
from megatron.training import get_args, print_rank_0

from wlb.host.batches import MicroBatchInput, build_inputs, lay_out
from wlb.host.build import build_schedule, make_cost_model, padded_vocab, stock_blend
from wlb.host.elastic import agree
from wlb.host.prefetch import HostPrefetcher
from wlb.host.step import RankView, make_prepare
from wlb.megatron import wlb_log
from wlb.packing.stock_samples import StockSampleBatcher
from wlb.packing.types import BatchPlan, Piece
from wlb.run_config import RunConfig


class SharedSteps:
    """Steps (this rank's micro-batches of one iteration, or of one evaluation batch) made in
    order by ``draw`` and read by ``num_chunks`` model chunks, each at its own pace."""

    def __init__(self, draw: Callable[[], list[MicroBatchInput]], num_chunks: int,
                 first: int = 0) -> None:
        self._draw, self.num_chunks, self.first = draw, num_chunks, first
        self._inputs: dict[int, list[MicroBatchInput]] = {}  # step -> its micro-batches
        self._done: dict[int, int] = {}  # step -> chunks that have read all of it
        self._next = first  # the step ``draw`` makes next

    def inputs(self, step: int) -> list[MicroBatchInput]:
        while step not in self._inputs:  # (chunks only ask for the step after their last)
            self._inputs[self._next] = self._draw()
            self._next += 1
        return self._inputs[step]

    def finished(self, step: int) -> None:
        """One chunk has read all of ``step``; the last one frees it."""
        self._done[step] = self._done.get(step, 0) + 1
        if self._done[step] == self.num_chunks:
            del self._inputs[step], self._done[step]


class ChunkIterator:
    """One model chunk's iterator over :class:`SharedSteps`' micro-batches, in order."""

    def __init__(self, steps: SharedSteps) -> None:
        self.steps = steps
        self.step, self.index = steps.first, 0

    def __iter__(self) -> ChunkIterator:
        return self

    def __next__(self) -> MicroBatchInput:
        inputs = self.steps.inputs(self.step)
        mb = inputs[self.index]
        self.index += 1
        if self.index == len(inputs):
            self.steps.finished(self.step)
            self.step, self.index = self.step + 1, 0
        return mb


class WLBData:
    """This rank's WLB host path: train micro-batches and validation micro-batches.

    Args:
        cfg: the run's configuration (``wlb.megatron.arguments.wlb_run_config``).
        world_size, dp_rank, cp_rank: where this rank sits.
        valid_samples: validation samples megatron asks for over the run (0: none).
        first_iteration: the iteration the first train micro-batches are for: a resumed run
            replays the plans of the iterations before it (packing only; exact, since the
            plans follow from the lengths and the seed alone, under any layout).
        valid_consumed: validation samples already evaluated (a resumed run's).
        num_chunks: model chunks (VPP) that each read every micro-batch.
        moe: the model's experts for the cost model (``num_experts``, ``moe_router_topk``,
            ``moe_ffn_hidden_size``), or None.
        log_plans: a file to append each iteration's consumed, trained and pending pieces to
            (``--log-plans``; one rank writes it), or None.
        elastic_groups: elastic CP: the pool's process groups
            (``wlb.megatron.elastic.build_elastic_groups``), or None.
        pool_group: elastic CP: the process group of this stage's DP x CP pool, over which
            every iteration's elastic plan is agreed on before its first group collective.
    """

    def __init__(self, cfg: RunConfig, world_size: int, dp_rank: int, cp_rank: int, *,
                 valid_samples: int = 0, first_iteration: int = 1, valid_consumed: int = 0,
                 num_chunks: int = 1, moe: dict | None = None,
                 log_plans: str | None = None, elastic_groups=None, pool_group=None) -> None:
        from wlb.host.documents import build_documents
        from wlb.megatron.indexed import IndexedDocuments

        m, tr = cfg.model, cfg.training
        self.layout = cfg.layout(world_size)
        self.dp_rank, self.cp_rank = dp_rank, cp_rank
        self.documents = build_documents(cfg.data, m, tr.seed, stock_blend(cfg),
                                         IndexedDocuments)
        vocab = padded_vocab(m, self.documents.source.vocab_size)
        self.cost = make_cost_model(m, cfg.wlb, self.layout, vocab, **(moe or {}))
        self.schedule, self.packer_info, self.chooser = build_schedule(
            cfg, self.layout, self.documents.train, self.cost, self.documents.train_blend)
        t0 = time.perf_counter()
        #: tokens of the iterations before ``first_iteration`` (a resumed run's)
        self.replayed_tokens = 0
        for _ in range(first_iteration - 1):
            self.replayed_tokens += self.schedule.next_plan().num_tokens
        #: (plans replayed, seconds) of a resumed run
        self.replayed = (first_iteration - 1, time.perf_counter() - t0)
        self.elastic, self._pool_group = None, pool_group
        if elastic_groups is not None:
            from wlb.host.elastic import build_runtime, comm_price, split_efficiency

            w = cfg.wlb
            self.elastic = build_runtime(elastic_groups, self.cost, self.chooser,
                                         comm_price(w.elastic_comm_coef, w.cost_model),
                                         split_efficiency(w.cost_model))
        # (the cost-model predictions at logged iterations: wlb.megatron.wlb_log prints them)
        prepare = make_prepare(RankView(self.layout, dp_rank, cp_rank), self.chooser,
                               self.documents.train, cost=self.cost, elastic=self.elastic,
                               rank_tokens=self.schedule.packer.max_tokens // self.layout.cp,
                               log_interval=cfg.logging.log_interval)
        self._prefetch = HostPrefetcher(self.schedule, prepare, first_iteration=first_iteration,
                                        ahead=cfg.wlb.host_prefetch, log_plans=bool(log_plans))
        self._plans = open(log_plans, "a", buffering=1) if log_plans else None  # noqa: SIM115
        self.train = SharedSteps(self._train_step, num_chunks, first_iteration)
        #: iteration -> its plan's figures (tokens, digest, host times, predictions), until
        #: the log reads them (``pop_figures``)
        self.figures: dict[int, dict] = {}
        self._train_iters = tr.train_iters
        self.valid = None
        if valid_samples and self.documents.valid is not None:
            gbs = self.layout.global_batch_size
            self._valid_order = StockSampleBatcher(self.documents.valid.lengths, gbs,
                                                   m.seq_length, valid_samples, tr.seed)
            self.valid = SharedSteps(self._valid_step, num_chunks)
            self._valid_first = valid_consumed // gbs

    def _train_step(self) -> list[MicroBatchInput]:
        iteration = self.train._next
        step = self._prefetch.next(more=iteration < self._train_iters)
        if step.plan is None:
            raise StopIteration
        if step.inputs.eplan is not None:  # (a collective of this stage's pool)
            agree(step.inputs.eplan, step.plan, group=self._pool_group)
        if self._plans:
            self._plans.write(json.dumps({"iteration": iteration, "consumed": step.consumed,
                                          "trained": step.trained,
                                          "pending": step.pending}) + "\n")
        self.figures[iteration] = {
            "tokens": step.plan.num_tokens, "plan_digest": step.plan.digest(),
            "host_ms": sum(step.inputs.stage_ms.values()),
            "host_wait_ms": self._prefetch.last_wait_ms, "pending_tokens": step.pending_tokens,
            **step.inputs.predictions}
        return step.inputs.inputs

    def pop_figures(self, iteration: int) -> dict:
        """``iteration``'s plan figures (and those of any iteration before it, dropped)."""
        for it in [k for k in self.figures if k < iteration]:
            del self.figures[it]
        return self.figures.pop(iteration, {})

    def _valid_step(self) -> list[MicroBatchInput]:
        """The next global batch of stock Megatron's valid samples, this rank's part of it."""
        b = self._valid_first + self.valid._next
        order, gbs = self._valid_order, self.layout.global_batch_size
        samples = [order.shuffle[(b * gbs + j) % len(order.shuffle)] for j in range(gbs)]
        mbs = [[Piece(d, o, n, 0) for d, o, n, _ in order.sample_pieces(int(s))]
               for s in samples]
        plan = BatchPlan(b, mbs, [j % self.layout.dp for j in range(len(mbs))])
        layouts = lay_out(plan, self.layout.pad_multiple, self.chooser, self.dp_rank)
        return build_inputs(layouts, self.dp_rank, self.documents.valid,
                            pad_multiple=self.layout.pad_multiple, cp_size=self.layout.cp,
                            cp_rank=self.cp_rank)

    def close(self) -> None:
        self._prefetch.close()
        if self._plans:
            self._plans.close()


_DATA: dict[str, WLBData] = {}  # the run's one WLBData (VPP asks once per chunk)


def cp_group_of(mb: MicroBatchInput):
    """The process group ``mb`` is sharded over: its elastic CP group (None for a group of one
    rank), else None (the layout's CP group, which the attention holds)."""
    if mb.group is None:
        return None
    return _DATA["run"].elastic.group(*mb.group)


def datasets_provider(num_samples, vp_stage: int | None = None):
    """``pretrain()``'s provider for WLB's packing: (train, valid, None) iterators on every
    rank (``num_samples``: megatron's train/valid/test sample counts).

    megatron has already loaded a ``--load`` checkpoint (``args.iteration``, its consumed valid
    samples) when it calls this: WLB's data resumes from them.
    """
    from wlb.megatron.arguments import moe_cost_args, wlb_run_config

    args = get_args()
    if "run" not in _DATA:
        torch.set_num_threads(args.threads)
        cfg, world = wlb_run_config(args), torch.distributed.get_world_size()
        elastic_groups = None
        if args.wlb_elastic_cp:  # (collective: every rank creates every pool group)
            from types import SimpleNamespace

            from wlb.megatron.elastic import build_elastic_groups

            elastic_groups = build_elastic_groups(SimpleNamespace(
                layout=cfg.layout(world),
                pp_rank=mpu.get_pipeline_model_parallel_rank(),
                tp_rank=mpu.get_tensor_model_parallel_rank(),
                dp_rank=mpu.get_data_parallel_rank(), cp_rank=mpu.get_context_parallel_rank()))
        _DATA["run"] = d = WLBData(
            cfg, world, mpu.get_data_parallel_rank(), mpu.get_context_parallel_rank(),
            valid_samples=num_samples[1] if args.eval_iters else 0,
            first_iteration=args.iteration + 1, valid_consumed=args.consumed_valid_samples,
            num_chunks=args.virtual_pipeline_model_parallel_size or 1,
            moe=moe_cost_args(args),
            log_plans=args.log_plans if torch.distributed.get_rank() == 0 else None,
            elastic_groups=elastic_groups,
            pool_group=mpu.get_data_parallel_group(with_context_parallel=True))
        if args.eval_iters and d.valid is None:
            raise RuntimeError(f"--eval-iters {args.eval_iters}: --split {args.split} gives the "
                               "valid split no documents (use --eval-iters 0)")
        print_rank_0(f"> WLB: {len(d.documents.train.lengths)} train documents, packing "
                     f"{args.wlb_packing} ({d.packer_info}), CP sharding {args.wlb_cp_sharding}")
        wlb_log.say_notes(cfg)
        wlb_log.install(d)
        if args.iteration:
            print_rank_0(f"> WLB: resumed at iteration {args.iteration}: its {d.replayed[0]} "
                         f"plans replayed in {d.replayed[1]:.2f} s")
    d = _DATA["run"]
    return ChunkIterator(d.train), d.valid and ChunkIterator(d.valid), None


datasets_provider.is_distributed = True  # every rank builds its own (the same plans)
