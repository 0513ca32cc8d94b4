"""The CP level's vocabulary: how one packed micro-batch is split over the ranks of a CP group.

A *strategy* is one concrete sharding of a micro-batch (the index math in :mod:`wlb.cp.shard`
implements each). A *candidate set* is what the per-micro-batch chooser
(:class:`wlb.cp.selector.StrategyChooser`) picks from; the ``--wlb-cp-sharding`` flag names one
(``wlb.config.CP_SHARDING`` maps each flag spelling to its candidates, in one place).

Strategies::

    per_seq   the whole sequence cut into 2·CP chunks (stock Megatron / Llama 3)
    per_doc   every document cut into 2·CP chunks (WLB-LLM §5.1)
    mixed     long documents per_doc, each run of short ones per_seq (ours)
"""

from __future__ import annotations

from typing import Literal, get_args

#: one concrete CP sharding of a micro-batch
Strategy = Literal["per_seq", "per_doc", "mixed"]

#: every strategy the index math and the CP attention accept
ALL_STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
#: the paper's two strategies: its adaptive selector (§5.3) chooses between these
PAPER_STRATEGIES: tuple[Strategy, ...] = ("per_seq", "per_doc")
