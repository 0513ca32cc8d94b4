"""The bad-input table of the closing notes: each bad input through ``scripts/pretrain_gpt.sh``
(exit status, stderr lines) and under a bare 2-process torchrun (torchrun's exit status, how
many of our error lines), with our message. ``tests/training/test_bad_input.py`` asserts the
same behaviour; this prints it as a table.

    python -m tests.helpers.bad_input_table [OUT_DIR]     # ~3 minutes on 2 cores
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from tests.helpers.torchrun import ENV, ROOT, TINY, run_pretrain

LAUNCHER = os.path.join(ROOT, "scripts", "pretrain_gpt.sh")
OURS = "pretrain_gpt_wlb.py: "
RESUME = ["--lr-decay-iters", "10", "--lr-warmup-iters", "1", "--seed", "7", "--no-wlb-shuffle",
          "--mock-num-docs", "400"]


def _fixtures(out: str) -> tuple[str, str, str]:
    """A checkpoint, a copy with a truncated shard file, a dataset with a truncated index."""
    from wlb.megatron.indexed import write_documents

    ck = os.path.join(out, "ck")
    if not os.path.isdir(ck):
        run_pretrain(1, TINY + ["--global-batch-size", "4", "--train-iters", "1", "--save", ck],
                     os.path.join(out, "l.jsonl"))
    trunc = os.path.join(out, "ck_trunc")
    shutil.rmtree(trunc, ignore_errors=True)
    shutil.copytree(ck, trunc)
    it = os.path.join(trunc, "iter_0000001")
    shard = os.path.join(it, sorted(f for f in os.listdir(it) if f.endswith(".distcp"))[0])
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    prefix = os.path.join(out, "c")
    write_documents(prefix, [np.arange(1, 9)] * 5, vocab_size=64, eod=0, tokenizer="t")
    with open(prefix + ".idx", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".idx") - 8)
    return ck, trunc, prefix


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="bad_input_")
    os.makedirs(out, exist_ok=True)
    ck, trunc, prefix = _fixtures(out)
    cases = [
        ("unknown flag `--num-workers 2`", ["--num-workers", "2"], {}),
        ("`--micro-batch-size 2`", ["--micro-batch-size", "2"], {}),
        ("`--wlb-max-tokens 100` (< seq 256)", ["--wlb-max-tokens", "100"], {}),
        ("`--max-position-embeddings 128`", ["--max-position-embeddings", "128"], {}),
        ("`--split 0,1,0`", ["--split", "0,1,0"], {}),
        ("`--fp8-format hybrid`", ["--fp8-format", "hybrid"], {}),
        ("`--tokenizer-type Llama3Tokenizer`", ["--tokenizer-type", "Llama3Tokenizer"], {}),
        ("`--data-path 0.3 A -1 B`", ["--data-path", "0.3", "A", "-1", "B"],
         {"DATA_PATH": prefix}),
        ("CP=3 (seq 256 not a multiple of 6)", [], {"CP": "3"}),
        ("truncated `.idx`", ["--data-path", prefix, "--vocab-size", "64"],
         {"DATA_PATH": prefix}),
        ("truncated checkpoint shard file", [*RESUME, "--load", trunc], {}),
        ("resume with another `--lr`", [*RESUME, "--lr", "1e-3", "--load", ck], {}),
    ]
    lines = ["| input | message (one line, from local rank 0) | pretrain_gpt.sh: exit / stderr "
             "lines | torchrun 2 procs: exit / our lines |", "|---|---|---|---|"]
    for name, args, env in cases:
        e = {**ENV, "MODEL": "tiny", "SEQ": "256", "GBS": "4", "ITERS": "1", **env}
        sh = subprocess.run(["bash", LAUNCHER, *args], capture_output=True, text=True, env=e,
                            timeout=300)
        dry = subprocess.run(["bash", LAUNCHER], capture_output=True, text=True,
                             env={**e, "DRY_RUN": "1"}, timeout=60).stdout.split()
        cmd = dry[dry.index(os.path.join(ROOT, "pretrain_gpt_wlb.py")):]
        tr = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", *cmd, *args], capture_output=True, text=True,
                            env=e, timeout=300)
        ours = [x for x in tr.stderr.splitlines() if x.startswith(OURS)]
        msg = sh.stderr.strip().replace("|", "\\|")
        lines.append(f"| {name} | `{msg}` | {sh.returncode} / {len(sh.stderr.splitlines())} | "
                     f"{tr.returncode} / {len(ours)} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
