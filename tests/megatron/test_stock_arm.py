"""The stock arm of pretrain_gpt_wlb_lm.py is Megatron-LM: its losses equal those of Megatron-LM's
own ``pretrain()`` with a minimal provider that has no WLB code (tests/helpers/megatron_lm_gpt.py)
on the same flags, seed and ``.bin/.idx`` corpus.

Two attentions, at 1 process and at PP 2 (micro-batches of 2 samples):

* Megatron-LM's default: causal over the whole sample (megatron's local attention in both).
* Document masking. The reference masks with megatron's dense mask (``--reset-attention-mask
  --reset-position-ids``: a document ends after each EOD); the stock arm with megatron's
  inter-document masking (``--dataloader-inter-document-masking``: ``cu_seqlens`` from the
  corpus' documents, which end with EOD here), whose THD micro-batches megatron's local
  attention does not take: WLB's attention runs them, per-seq, with megatron's per-document
  RoPE. RoPE is relative, so both compute the same attention.

The losses compared are megatron's own iteration lines (``lm loss``, 7 significant digits;
megatron prints the mean since its last reset, the same function of the same losses in both).
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers.torchrun import ENV, ROOT

VOCAB = 255  # NullTokenizer(--vocab-size 255): EOD is 254
EOD = VOCAB - 1
REL = 1e-5

COMMON = [
    "--split", "100,0,0", "--tokenizer-type", "NullTokenizer", "--vocab-size", str(VOCAB),
    "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
    "--seq-length", "256", "--max-position-embeddings", "256", "--micro-batch-size", "2",
    "--global-batch-size", "4", "--train-iters", "3", "--lr", "1e-3", "--lr-warmup-iters", "1",
    "--distributed-backend", "gloo", "--transformer-impl", "local", "--no-persist-layer-norm",
    "--no-gradient-accumulation-fusion", "--no-masked-softmax-fusion", "--no-bias-gelu-fusion",
    "--no-bias-dropout-fusion", "--no-rope-fusion", "--position-embedding-type", "rope",
    "--hidden-dropout", "0", "--attention-dropout", "0", "--log-interval", "1", "--seed", "7",
    "--eval-iters", "0", "--eval-interval", "1000", "--calculate-per-token-loss",
]
REFERENCE = ["-m", "tests.helpers.megatron_lm_gpt"]
STOCK = ["pretrain_gpt_wlb_lm.py", "--wlb-packing", "megatron"]
MASKING = {"causal": ([], []),
           "documents": (["--reset-attention-mask", "--reset-position-ids"],
                         ["--dataloader-inter-document-masking"])}
LAYOUTS = {1: [], 2: ["--pipeline-model-parallel-size", "2"]}
ITERATION = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.* lm loss: ([0-9.E+-]+) \|")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """400 documents of 6-400 tokens, each ending with EOD, written by megatron-core's own
    ``IndexedDatasetBuilder`` (as Megatron-LM's preprocess_data.py with --append-eod)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    prefix = str(tmp_path_factory.mktemp("corpus") / "docs")
    rng = np.random.default_rng(3)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(400):
        n = int(rng.integers(5, 60)) if rng.random() < 0.7 else int(rng.integers(60, 400))
        doc = np.append(rng.integers(0, EOD, n), EOD)
        builder.add_document(torch.from_numpy(doc), [len(doc)])
    builder.finalize(prefix + ".idx")
    return prefix


_RUNS: dict[tuple, list[tuple[int, float]]] = {}


def losses(corpus: str, tmp_path_factory, arm: str, masking: str, nproc: int
           ) -> list[tuple[int, float]]:
    """(iteration, megatron's printed lm loss) of one run (each run once per module)."""
    key = (arm, masking, nproc)
    if key not in _RUNS:
        target = REFERENCE if arm == "reference" else STOCK
        flags = MASKING[masking][0 if arm == "reference" else 1]
        cache = tmp_path_factory.mktemp("cache")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *target, "--data-path", corpus, *COMMON, *flags,
               *LAYOUTS[nproc], "--data-cache-path", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV,
                              timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        _RUNS[key] = [(int(i), float(x)) for i, x in ITERATION.findall(out)]
    return _RUNS[key]


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2], ids=["1-process", "pp2"])
@pytest.mark.parametrize("masking", ["causal", "documents"])
def test_the_stock_arm_trains_as_megatron_lm(corpus, tmp_path_factory, masking, nproc):
    ref = losses(corpus, tmp_path_factory, "reference", masking, nproc)
    stock = losses(corpus, tmp_path_factory, "stock", masking, nproc)
    assert [i for i, _ in ref] == [i for i, _ in stock] == [1, 2, 3]
    for (i, a), (_, b) in zip(ref, stock):
        assert abs(a - b) <= REL * abs(a), f"iteration {i}: Megatron-LM {a} vs stock arm {b}"


@pytest.mark.dist
@pytest.mark.slow
def test_the_comparison_tells_the_two_attentions_apart(corpus, tmp_path_factory):
    """The 1e-5 above is tight enough to see document masking: causal and document-masked runs
    of the same samples differ by 9-15 times it here (an untrained model barely looks at other
    documents), so an arm that lost its masking would fail it."""
    causal = losses(corpus, tmp_path_factory, "stock", "causal", 1)
    masked = losses(corpus, tmp_path_factory, "reference", "documents", 1)
    assert all(abs(a - b) > 5 * REL * abs(a) for (_, a), (_, b) in zip(causal, masked))
