"""wlb.megatron.dist_ckpt's writer: a rank with little to write writes it itself, no fork."""

from __future__ import annotations

import queue

import torch

from wlb.megatron import dist_ckpt

Writer = dist_ckpt.filesystem_async.FileSystemWriterAsync


def _bucket(name: str, numel: int):
    return (name, "key", ([], [(f"item-{name}", torch.zeros(numel))]))


def _fake_writer(calls: list, fail: str | None = None):
    def write(transforms, idx, bucket, results, done, use_fsync, **kwargs):
        calls.append((idx, bucket[0], use_fsync))
        results.put((idx, RuntimeError("disk full") if bucket[0] == fail else [bucket[0]]))
        done.get()
        done.task_done()

    return staticmethod(write)


def test_small_buckets_are_written_here_in_order_and_big_ones_by_megatrons_processes(
        monkeypatch):
    forked, calls = [], []
    monkeypatch.setattr(Writer, "write_preloaded_data", _fake_writer(calls))
    write = dist_ckpt._small_writes_in_process(lambda *a: forked.append(a)).__func__
    out = queue.Queue()
    write([], False, 0, [_bucket("a", 10), _bucket("b", 10)], out)
    assert calls == [(0, "a", True), (1, "b", True)] and forked == []
    assert out.get_nowait() == {0: ["a"], 1: ["b"]}

    big = [_bucket("c", dist_ckpt.WRITE_IN_PROCESS_BYTES // 4 + 1)]  # float32: 4 bytes each
    write([], False, 0, big, out)
    assert len(forked) == 1 and forked[0][3] is big and len(calls) == 2


def test_a_failed_write_is_the_result(monkeypatch):
    calls = []
    monkeypatch.setattr(Writer, "write_preloaded_data", _fake_writer(calls, fail="a"))
    write = dist_ckpt._small_writes_in_process(None).__func__
    out = queue.Queue()
    write([], False, 0, [_bucket("a", 1), _bucket("b", 1)], out)
    result = out.get_nowait()
    assert isinstance(result, RuntimeError) and len(calls) == 1  # (stops at the first failure)


def test_the_patch_is_in_place():
    assert Writer.write_preloaded_data_multiproc.wlb_in_process
