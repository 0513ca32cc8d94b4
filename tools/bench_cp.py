#!/usr/bin/env python3
"""Measure CP attention balance under per_seq, per_doc, mixed and adaptive sharding.

Micro-batches: documents from a length file (file order, scaled by context/131072, at least 1
token) concatenated and cut at each --context-length, as stock Megatron packs them. For every
micro-batch, strategy and CP rank it times that rank's attention (forward + backward over its
query segments against the micro-batch's keys) *one rank at a time*, so that ranks do not
compete for the same cores or GPU: as CP gloo processes between barriers (default; they also
time the full cp_attention call per strategy), or with ``--one-device`` all in this process on
--device (a GPU: ``cuda``, --dtype bfloat16, the kernel --backend resolves to; no collectives).
Per context length and CP size it reports rank-time max/mean (mean over micro-batches), the
iteration's attention time (sum over micro-batches of the slowest rank) and its speed-up over
per_seq, the same predicted by the selector's table (--table), and the adaptive choice against
the oracle (the faster strategy per micro-batch, as measured).

Examples:
    python -m tools.bench_cp --cp-sizes 2,4 --num-microbatches 50
    python -m tools.bench_cp --one-device --device cuda --dtype bfloat16 --heads 32 \\
        --kv-heads 8 --head-dim 128 --context-length 32768,65536,131072 --cp-sizes 2,4,8 \\
        --with-mixed --table attention_table.json --out cp_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wlb.cp import PAPER_STRATEGIES, cp_attention, rank_segments, shard_indices
from wlb.cp.kernels import resolve_backend
from wlb.cp.profile import time_fwd_bwd
from wlb.cp.selector import DEFAULT_TABLE, KernelTable, choose_strategy, predict
from wlb.cp.strategy import ALL_STRATEGIES
from wlb.data.lengths import DEFAULT_LENGTHS


def make_microbatches(path: str, context: int, count: int, skip: int) -> list[list[int]]:
    with open(path, encoding="utf-8") as f:
        lengths = json.load(f)
    scale = context / 131072
    mbs, cur, room = [], [], context
    for d in lengths[skip:]:
        d = max(1, round(d * scale))
        while d > 0:
            take = min(d, room)
            cur.append(take)
            d -= take
            room -= take
            if room == 0:
                mbs.append(cur)
                if len(mbs) == count:
                    return mbs
                cur, room = [], context
    return mbs


def worker(rank, world, port, mbs, a, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    group = dist.group.WORLD
    rows = []
    scale = a.head_dim**-0.5
    for n, lens in enumerate(mbs):
        g = torch.Generator().manual_seed(n)
        T = sum(lens)
        q = torch.randn(T, a.heads, a.head_dim, generator=g)
        k = torch.randn(T, a.kv_heads, a.head_dim, generator=g)
        v = torch.randn(T, a.kv_heads, a.head_dim, generator=g)
        row = {"doc_lens": lens}
        for s in a.strategies:
            front, back = rank_segments(lens, world, rank, s)
            idx = shard_indices(lens, world, rank, s)
            mine = 0.0
            for r in range(world):  # one rank at a time: no core contention
                dist.barrier()
                if r == rank:
                    mine = time_fwd_bwd("torch", q[idx], k, v, front + back, scale, a.reps)
                dist.barrier()
            times = [None] * world
            dist.all_gather_object(times, mine, group=group)
            ql, kl, vl = (x[idx].clone().requires_grad_() for x in (q, k, v))
            dist.barrier()
            t0 = time.perf_counter()
            cp_attention(ql, kl, vl, lens, group, s).sum().backward()
            dist.barrier()
            row[s] = {"rank_s": times, "wall_s": time.perf_counter() - t0}
        rows.append(row)
    if rank == 0:
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


def one_device_rows(mbs, cp, a) -> tuple[list[dict], str]:
    """(the gloo worker's rows without the full-call wall time, the kernel that ran): every CP
    rank's attention share timed in this process, one rank after another, on ``a.device``."""
    dev, dtype = torch.device(a.device), getattr(torch, a.dtype)
    backend = resolve_backend(a.backend, torch.empty(0, device=dev, dtype=dtype))
    scale = a.head_dim**-0.5
    rows = []
    for n, lens in enumerate(mbs):
        g = torch.Generator(device=dev).manual_seed(n)
        q, k, v = (torch.randn(sum(lens), h, a.head_dim, generator=g, device=dev, dtype=dtype)
                   for h in (a.heads, a.kv_heads, a.kv_heads))  # [T, heads, head_dim]
        row = {"doc_lens": lens}
        for s in a.strategies:
            times = []
            for r in range(cp):  # rank r's queries against the micro-batch's keys
                front, back = rank_segments(lens, cp, r, s)
                q_r = q[shard_indices(lens, cp, r, s).to(dev)]
                times.append(time_fwd_bwd(backend, q_r, k, v, front + back, scale, a.reps))
            row[s] = {"rank_s": times}
        rows.append(row)
    return rows, backend


def gloo_rows(mbs, cp, a) -> list[dict]:
    """Rows measured by ``cp`` gloo processes (the worker above)."""
    from tests.helpers.dist import free_port

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        mp.spawn(worker, args=(cp, free_port(), mbs, a, out), nprocs=cp, join=True)
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def summarize(rows, cp, table, strategies=PAPER_STRATEGIES) -> dict:
    """Per-strategy and adaptive figures of one CP size's rows (seconds summed over rows)."""
    res = {"cp": cp, "num_microbatches": len(rows)}
    iter_t = {s: 0.0 for s in strategies}
    ratio = {s: 0.0 for s in strategies}
    wall = {s: 0.0 for s in strategies}
    pred = {s: 0.0 for s in strategies}
    adaptive = oracle = adaptive_pred = oracle_all = 0.0
    picks = {s: 0 for s in PAPER_STRATEGIES}
    agree = 0
    for row in rows:
        slowest = {}
        for s in strategies:
            t = row[s]["rank_s"]
            slowest[s] = max(t)
            iter_t[s] += max(t)
            ratio[s] += max(t) * len(t) / sum(t) / len(rows)
            wall[s] += row[s].get("wall_s", float("nan"))  # nan: --one-device has no calls
            pred[s] += max(predict(row["doc_lens"], cp, s, table)) / 1e6
        choice, p = choose_strategy(row["doc_lens"], cp, table)
        picks[choice] += 1
        adaptive += slowest[choice]
        adaptive_pred += p[choice] / 1e6
        best = min(PAPER_STRATEGIES, key=lambda s: slowest[s])
        oracle += slowest[best]
        oracle_all += min(slowest.values())
        agree += best == choice
    base = iter_t["per_seq"]
    for s in strategies:
        res[s] = {"rank_max_over_mean": ratio[s], "iter_attn_s": iter_t[s],
                  "speedup_over_per_seq": base / iter_t[s], "predicted_s": pred[s],
                  "full_call_wall_s": None if wall[s] != wall[s] else wall[s]}
    res["adaptive"] = {"iter_attn_s": adaptive, "speedup_over_per_seq": base / adaptive,
                       "predicted_s": adaptive_pred, "picks": picks,
                       "oracle_s": oracle, "gap_to_oracle": adaptive / oracle - 1,
                       "choice_matches_oracle": agree / len(rows)}
    if len(strategies) > len(PAPER_STRATEGIES):
        res["oracle_all_s"] = oracle_all  # per micro-batch best including "mixed"
        ad_all, picks_all = 0.0, {s: 0 for s in strategies}
        for row in rows:
            choice, _ = choose_strategy(row["doc_lens"], cp, table, strategies)
            picks_all[choice] += 1
            ad_all += max(row[choice]["rank_s"])
        res["adaptive_all"] = {"iter_attn_s": ad_all, "speedup_over_per_seq": base / ad_all,
                               "picks": picks_all, "gap_to_oracle": ad_all / oracle_all - 1}
    return res


def print_result(r, strategies) -> None:
    """One CP size's table, as the tool prints it."""
    print(f"\ncontext {r['context']}, CP={r['cp']}   {'rank max/mean':>14}{'iter attn s':>13}"
          f"{'vs per_seq':>11}{'predicted s':>13}{'full call s':>13}")
    for s in strategies:
        x = r[s]
        wall = "-" if x["full_call_wall_s"] is None else f"{x['full_call_wall_s']:.3f}"
        print(f"  {s:<9}{x['rank_max_over_mean']:>14.3f}{x['iter_attn_s']:>13.4f}"
              f"{x['speedup_over_per_seq']:>10.3f}x{x['predicted_s']:>13.4f}{wall:>13}")
    ad = r["adaptive"]
    print(f"  adaptive {'':>14}{ad['iter_attn_s']:>13.4f}{ad['speedup_over_per_seq']:>10.3f}x"
          f"{ad['predicted_s']:>13.4f}   picks {ad['picks']}")
    print(f"  oracle   {'':>14}{ad['oracle_s']:>13.4f}   adaptive vs oracle "
          f"{100 * ad['gap_to_oracle']:+.1f}%, same choice on "
          f"{100 * ad['choice_matches_oracle']:.0f}% of micro-batches")
    if "oracle_all_s" in r:
        aa = r["adaptive_all"]
        print(f"  adaptive incl. mixed {aa['iter_attn_s']:>11.4f}"
              f"{aa['speedup_over_per_seq']:>10.3f}x   picks {aa['picks']}")
        print(f"  oracle incl. mixed {'':>2}{r['oracle_all_s']:>11.4f}   adaptive incl. mixed "
              f"vs this oracle {100 * aa['gap_to_oracle']:+.1f}%")


def _refuse(message: str):
    """Bad input: one line, exit status 2, before any work."""
    print(f"bench_cp.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--doc-lengths", default=DEFAULT_LENGTHS)
    p.add_argument("--context-length", default="4096",
                   help="tokens per micro-batch; a comma list measures each (32768,65536)")
    p.add_argument("--cp-sizes", default="2,4")
    p.add_argument("--num-microbatches", type=int, default=50)
    p.add_argument("--skip-docs", type=int, default=0, help="start this far into the file")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--reps", type=int, default=2, help="timed calls per rank (best kept)")
    p.add_argument("--table", default=DEFAULT_TABLE,
                   help="the selector's kernel table (the adaptive choice and predictions)")
    p.add_argument("--with-mixed", action="store_true",
                   help="also measure the 'mixed' strategy (long documents per-doc, runs of short "
                        "ones per-seq)")
    p.add_argument("--one-device", action="store_true",
                   help="time every rank's share in this process on --device (no gloo ranks)")
    p.add_argument("--device", default="cpu", help="with --one-device: cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="with --one-device")
    p.add_argument("--backend", default="auto",
                   help="with --one-device: attention kernel (auto, torch, varlen, flash, te)")
    p.add_argument("--out", default=None, help="also write the results as JSON to this file")
    p.add_argument("--json", action="store_true", help="print one JSON line per result")
    a = p.parse_args(argv)
    a.strategies = ALL_STRATEGIES if a.with_mixed else PAPER_STRATEGIES
    try:
        a.contexts = [int(x) for x in a.context_length.split(",")]
        a.cps = [int(x) for x in a.cp_sizes.split(",")]
    except ValueError:
        _refuse(f"--context-length {a.context_length!r} / --cp-sizes {a.cp_sizes!r}: "
                "comma lists of integers")
    for cp in a.cps:
        for ctx in a.contexts:
            if cp < 2 or ctx < 2 * cp:
                _refuse(f"CP={cp} at context {ctx} needs cp >= 2 and context >= 2*CP")
    if a.one_device and a.device.startswith("cuda") and not torch.cuda.is_available():
        _refuse(f"--device {a.device}: no CUDA device here")
    if not a.one_device and (a.device != "cpu" or a.dtype != "float32"):
        _refuse("--device / --dtype need --one-device (gloo ranks run fp32 on the CPU)")
    return a


def _setting(a, argv) -> dict:
    """What the figures were measured with, for ``--out``."""
    setting = {k: getattr(a, k) for k in ("doc_lengths", "num_microbatches", "heads", "kv_heads",
                                          "head_dim", "reps", "table", "device", "dtype",
                                          "one_device")}
    setting.update(torch=torch.__version__, command="python -m tools.bench_cp " + " ".join(
        sys.argv[1:] if argv is None else argv), machine=torch.cuda.get_device_name(0)
        if a.device.startswith("cuda") else f"{platform.machine()} {platform.processor()}")
    return setting


def main(argv=None) -> int:
    a = parse_args(argv)
    table = KernelTable.from_json(a.table)
    results, setting = [], _setting(a, argv)
    for ctx in a.contexts:
        mbs = make_microbatches(a.doc_lengths, ctx, a.num_microbatches, a.skip_docs)
        for cp in a.cps:
            t0 = time.perf_counter()
            if a.one_device:
                rows, backend = one_device_rows(mbs, cp, a)
            else:
                rows, backend = gloo_rows(mbs, cp, a), "torch"
            r = summarize(rows, cp, table, a.strategies)
            r.update(context=ctx, backend=backend, seconds=time.perf_counter() - t0)
            results.append(r)
            if a.json:
                print(json.dumps(r), flush=True)
            else:
                print_result(r, a.strategies)
            if a.out:  # after every result: a run stopped at a time limit keeps what it measured
                with open(a.out + ".tmp", "w", encoding="utf-8") as f:
                    json.dump({"setting": setting, "results": results}, f, indent=1)
                os.replace(a.out + ".tmp", a.out)
    if not a.json:
        print(f"\n{a.num_microbatches} micro-batches per context, heads {a.heads}/{a.kv_heads}, "
              f"dim {a.head_dim}, {a.device} {a.dtype}, table {os.path.basename(a.table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
