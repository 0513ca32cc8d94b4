"""A Megatron script's flags: each accepted one changes what it should, no-ops say so once,
refused ones and unknown ones are one line that names them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT
from wlb.training.arguments import ArgumentError, build_parser, parse, run_config

BASE = ["--mock-data", "--mock-num-docs", "50", "--seq-length", "64", "--num-layers", "2",
        "--hidden-size", "64", "--num-attention-heads", "4", "--train-iters", "10"]


def _probe(extra: list[str]) -> dict:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tests/helpers/probe_run.py"),
                          *BASE, *extra], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probes():
    """The run built with stock flags, and with every flag below set off its default."""
    changed = ["--adam-beta1", "0.8", "--adam-beta2", "0.99", "--adam-eps", "1e-5",
               "--lr-warmup-fraction", "0.3", "--lr-decay-iters", "20", "--rotary-base",
               "500000", "--rotary-percent", "0.5", "--group-query-attention",
               "--num-query-groups", "2", "--init-method-std", "0.1", "--tokenizer-type",
               "NullTokenizer", "--vocab-size", "300"]
    return _probe([]), _probe(changed)


@pytest.mark.parametrize("key,want", [
    ("betas", [0.8, 0.99]), ("eps", 1e-5), ("lr_warmup_steps", 0.3 * 20),
    ("rotary_base", 500000.0), ("rotary_percent", 0.5), ("num_query_groups", 2),
    ("vocab_size", 301),  # NullTokenizer: --vocab-size ids plus EOD
])
def test_each_flag_reaches_the_run(probes, key, want):
    stock, changed = probes
    assert changed[key] == pytest.approx(want)
    assert stock[key] != changed[key]


def test_init_method_std_sets_the_weights_std(probes):
    stock, changed = probes
    assert stock["fc1_std"] == pytest.approx(0.02, rel=0.1)
    assert changed["fc1_std"] == pytest.approx(0.1, rel=0.1)


def test_num_query_groups_without_group_query_attention_is_mha_and_said():
    cfg = parse([*BASE, "--num-query-groups", "2"])
    assert cfg.model.num_query_groups == 4
    assert any("--num-query-groups 2: no effect without --group-query-attention" in n
               for n in cfg.logging.notes)
    assert parse([*BASE, "--num-query-groups", "2", "--group-query-attention"]
                 ).model.num_query_groups == 2


def test_lr_warmup_fraction_is_a_fraction_of_the_decay_steps():
    assert parse([*BASE, "--lr-warmup-fraction", "0.25"]).training.lr_warmup_iters == 2.5
    with pytest.raises(ArgumentError, match="--lr-warmup-fraction=0.1 and --lr-warmup-iters=3"):
        run_config(build_parser().parse_args([*BASE, "--lr-warmup-fraction", "0.1",
                                              "--lr-warmup-iters", "3"]))


@pytest.mark.parametrize("flags,backend", [
    (["--use-flash-attn"], "flash"), (["--attention-backend", "fused"], "te"),
    (["--attention-backend", "unfused"], "torch"), (["--attention-backend", "local"], "torch"),
    ([], "auto"),
])
def test_megatron_attention_names_map_to_ours(flags, backend):
    assert parse([*BASE, *flags]).model.attention_backend == backend


@pytest.mark.parametrize("flag", ["--use-mcore-models", "--no-masked-softmax-fusion",
                                  "--no-rope-fusion", "--use-rotary-position-embeddings"])
def test_no_op_flags_are_accepted_with_one_note_each(flag):
    notes = parse([*BASE, flag]).logging.notes
    assert len(notes) == 1 and notes[0].startswith(f"{flag}: no effect here")
    assert parse([*BASE, "--transformer-impl", "local"]).logging.notes[0].startswith(
        "--transformer-impl local: no effect here")
    assert parse(BASE).logging.notes == []


@pytest.mark.parametrize("flags,words", [
    (["--fp8-format", "hybrid"], "--fp8-format: fp8 needs TransformerEngine"),
    (["--fp16"], "--fp16: fp16 with loss scaling is not supported"),
    (["--transformer-impl", "transformer_engine"], "--transformer-impl transformer_engine:"),
    (["--use-rope-scaling"], "--use-rope-scaling: Llama-3.1 RoPE"),
    (["--tokenizer-type", "Llama3Tokenizer"], "--tokenizer-type Llama3Tokenizer is not supported"),
    (["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", "v.json"], "needs --merge-file"),
    (["--use-flash-attn", "--attention-backend", "te"], "--use-flash-attn contradicts"),
    (["--rotary-percent", "0.2"], "--rotary-percent=0.2"),  # 3 of 16 channels: odd
    (["--exit-duration-in-mins", "0"], "--exit-duration-in-mins=0"),
])
def test_refused_flags_say_why(flags, words):
    with pytest.raises(ArgumentError, match=None) as e:
        run_config(build_parser().parse_args([*BASE, *flags]))
    assert words in str(e.value)


def test_an_unknown_megatron_flag_is_one_line_not_supported_yet():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "pretrain_gpt_wlb.py"), *BASE,
                          "--num-workers", "2", "--no-load-optim"], capture_output=True,
                         text=True, env=ENV, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["pretrain_gpt_wlb.py: error: --num-workers is not supported yet (not a "
                     "flag of this project; docs/flags.md lists the Megatron flags it reads)"]
