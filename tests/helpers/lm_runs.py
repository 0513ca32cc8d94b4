"""Runs of Megatron-LM's loop for the tests: pretrain_gpt_wlb.py, or Megatron-LM's own
``pretrain()`` with a provider of its own (tests/helpers/megatron_lm_gpt.py), under torchrun on
a ``.bin/.idx`` corpus; the losses read from megatron's own iteration lines.

megatron prints ``lm loss`` to 7 significant digits, as the mean since its last reset (at
iteration 2 here: of iterations 1 and 2): the same function of the same losses in every run.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from tests.helpers.torchrun import ENV, ROOT
from wlb.megatron.replica import CPU_FLAGS

VOCAB = 255  # NullTokenizer(--vocab-size 255): EOD is 254
EOD = VOCAB - 1

#: a tiny GPT on megatron's local layers (its fused kernels need CUDA), dropout off
COMMON = [
    "--split", "100,0,0", "--tokenizer-type", "NullTokenizer", "--vocab-size", str(VOCAB),
    "--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4",
    "--seq-length", "256", "--max-position-embeddings", "256",
    "--global-batch-size", "4", "--train-iters", "3", "--lr", "1e-3", "--lr-warmup-iters", "1",
    *CPU_FLAGS, "--position-embedding-type", "rope",
    "--hidden-dropout", "0", "--attention-dropout", "0", "--log-interval", "1", "--seed", "7",
    "--eval-iters", "0", "--eval-interval", "1000", "--calculate-per-token-loss",
]
REFERENCE = ["-m", "tests.helpers.megatron_lm_gpt"]
ENTRY = ["pretrain_gpt_wlb.py"]
ITERATION = re.compile(r"iteration\s+(\d+)/\s*\d+ \|.* lm loss: ([0-9.E+-]+) \|")


def write_corpus(prefix: str, num_docs: int = 400, seed: int = 3) -> str:
    """``num_docs`` documents of 6-400 tokens, each ending with EOD, written by megatron-core's
    own ``IndexedDatasetBuilder`` (as Megatron-LM's preprocess_data.py with --append-eod)."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(num_docs):
        n = int(rng.integers(5, 60)) if rng.random() < 0.7 else int(rng.integers(60, 400))
        doc = np.append(rng.integers(0, EOD, n), EOD)
        builder.add_document(torch.from_numpy(doc), [len(doc)])
    builder.finalize(prefix + ".idx")
    return prefix


_RUNS: dict[tuple, str] = {}
VALIDATION = re.compile(r"validation loss at iteration (\d+).*? \| lm loss value: ([0-9.E+-]+)")


def lm_output(target: list[str], nproc: int, flags: list[str], corpus: str, cache_dir: str
              ) -> str:
    """The output of ``target`` (:data:`REFERENCE` or :data:`ENTRY`) on ``nproc`` processes
    with :data:`COMMON` + ``flags`` on ``corpus`` (None: no ``--data-path``); each distinct run
    once per session."""
    key = (tuple(target), nproc, tuple(flags), corpus)
    if key not in _RUNS:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *target,
               *(["--data-path", corpus] if corpus else []), *COMMON, *flags,
               "--data-cache-path", cache_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV,
                              timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
        _RUNS[key] = out
    return _RUNS[key]


def lm_losses(*run, valid: bool = False) -> list[tuple[int, float]]:
    """(iteration, printed lm loss) of each training iteration of :func:`lm_output`'s run, or
    with ``valid`` of each validation."""
    found = (VALIDATION if valid else ITERATION).findall(lm_output(*run))
    return [(int(i), float(x)) for i, x in found]


def json_losses(path) -> dict[int, float]:
    """{iteration: loss} of a run's ``--log-json`` rows (every iteration's own loss, at full
    precision, where megatron prints the mean since its last log line; an iteration logged
    twice, by a restarted attempt, has the last one's)."""
    from wlb.runlog import load

    return {r["iteration"]: r["lm_loss"] for r in load(path) if "lm_loss" in r}


def assert_same_losses(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float,
                       what: str, iterations=(1, 2, 3)) -> None:
    """The same ``iterations`` in both, each loss within ``rel`` relative."""
    assert [i for i, _ in a] == [i for i, _ in b] == list(iterations), (a, b)
    for (i, x), (_, y) in zip(a, b):
        assert abs(x - y) <= rel * abs(x), f"iteration {i}: {what}: {x} vs {y}"


def per_iteration(printed: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Each iteration's own loss from megatron's printed ones: a run (or a resumed leg) does not
    reset its sums after its first logged iteration (training_log's ``is_first_iteration``), so
    its second line is the mean of its first two (log interval 1)."""
    out = list(printed)
    if len(out) > 1:
        out[1] = (out[1][0], 2 * out[1][1] - out[0][1])
    return out


#: what Megatron-LM's validation needs of any command line here (flags given later win)
CONFIG_BASE = ["--lr", "1e-3", "--eval-interval", "1000", "--transformer-impl", "local",
               "--attention-dropout", "0", "--micro-batch-size", "1", "--num-layers", "2",
               "--hidden-size", "64", "--num-attention-heads", "4"]


def run_config(flags: list[str], world_size: int = 1):
    """WLB's RunConfig of :data:`CONFIG_BASE` + ``flags`` for ``world_size`` ranks, parsed and
    validated by Megatron-LM without a process group (``run_config_for``); megatron's dataset
    cache and the mock documents go to this pytest process's cache."""
    from tests.helpers.torchrun import DATA_CACHE
    from wlb.megatron import cpu_loop

    cpu_loop.apply()
    from wlb.megatron.replica import offline_defaults, run_config_for

    return run_config_for([*CONFIG_BASE, "--data-cache-path", DATA_CACHE,
                           *offline_defaults(flags, VOCAB)], world_size)
