"""What a checkpoint's run state lets another run continue (pure checks, no model)."""

from __future__ import annotations

from types import SimpleNamespace

from wlb.training.checkpoint import packer_switch_problem, pending_pieces

STOCK = {"wlb": {"packing": "megatron", "global_batch": "documents"},
         "data": {"batcher": {"step": 2}, "packer": {"name": "megatron"}}}


def _wlb(pending=0, carry=0, global_batch="megatron"):
    queues = {"thresholds": [120, 200], "queues": [[[1, 0, 150, 0]] * pending, []]}
    return {"wlb": {"packing": "wlb", "global_batch": global_batch},
            "data": {"batcher": {"step": 2},
                     "packer": {"name": "wlb", "carry": [[2, 0, 9, 0]] * carry,
                                "queues": queues}}}


def _run(packing, global_batch="megatron"):
    return SimpleNamespace(packing=packing, global_batch=global_batch)


def test_the_same_packer_always_continues():
    assert packer_switch_problem(_wlb(pending=3, global_batch="documents"),
                                 _run("wlb", "documents")) is None


def test_stock_and_wlb_on_megatrons_batches_continue_each_other():
    assert packer_switch_problem(STOCK, _run("wlb")) is None
    assert packer_switch_problem(_wlb(), _run("megatron", "documents")) is None


def test_documents_mode_carries_only_the_weights():
    for meta, run in ((STOCK, _run("wlb", "documents")),
                      (_wlb(global_batch="documents"), _run("megatron"))):
        assert "--wlb-global-batch megatron" in packer_switch_problem(meta, run)


def test_documents_held_back_by_wlb_stop_a_switch_to_stock():
    assert pending_pieces(_wlb(pending=3, carry=2)["data"]) == 5
    problem = packer_switch_problem(_wlb(pending=3, carry=2), _run("megatron"))
    assert "holding 5 document pieces back" in problem


def test_checkpoint_args_take_megatrons_list_and_let_given_flags_win_where_it_does():
    from argparse import Namespace

    import pytest

    from wlb.training.checkpoint_args import model_args_of

    # a Megatron-LM checkpoint's args (its names: add_bias_linear; num_query_groups 1 w/o GQA)
    mlm = Namespace(num_layers=32, hidden_size=4096, ffn_hidden_size=14336, seq_length=8192,
                    num_attention_heads=32, max_position_embeddings=8192,
                    group_query_attention=True, num_query_groups=8, rotary_base=500000,
                    rotary_percent=1.0, swiglu=True, untie_embeddings_and_output_weights=True,
                    normalization="RMSNorm", add_bias_linear=False, position_embedding_type="rope",
                    tensor_model_parallel_size=8, lr=3e-4)
    got = model_args_of(mlm, given={"seq_length", "swiglu"})
    assert got == {"num_layers": 32, "hidden_size": 4096, "ffn_hidden_size": 14336,
                   "num_attention_heads": 32, "max_position_embeddings": 8192,
                   "group_query_attention": True, "num_query_groups": 8,
                   "position_embedding_type": "rope", "rotary_base": 500000.0,
                   "rotary_percent": 1.0, "swiglu": True,
                   "untie_embeddings_and_output_weights": True, "normalization": "RMSNorm",
                   "disable_bias_linear": True}  # seq_length given; no layout, no lr
    mha = Namespace(**{**vars(mlm), "group_query_attention": False, "num_query_groups": 1})
    assert model_args_of(mha, given=set())["num_query_groups"] is None
    with pytest.raises(ValueError, match="position_embedding_type is 'learned_absolute'"):
        model_args_of(Namespace(position_embedding_type="learned_absolute"), given=set())
