"""Token windows: cut without overlap, split test/val/train disjointly by position, the same for the same seed."""

from __future__ import annotations

import pytest
import torch

from orchestrator.errors import InputError
from orchestrator.tasks.llm.windows import cut_windows, split_windows


def test_windows_are_consecutive_and_the_short_tail_is_dropped():
    windows = cut_windows(torch.arange(103), 10)
    assert windows.shape == (10, 10) and torch.equal(windows.flatten(), torch.arange(100))


def test_splits_are_disjoint_seeded_and_capped():
    windows = cut_windows(torch.arange(400), 8)  # 50 windows, each holding distinct token ids
    splits = split_windows(windows, n_val=6, n_test=9, n_train=20, seed=3, source="text")
    firsts = {name: set(getattr(splits, name)[:, 0].tolist()) for name in ("train", "val", "test")}
    assert [len(firsts[n]) for n in ("train", "val", "test")] == [20, 6, 9]
    assert not firsts["val"] & firsts["test"] and not (firsts["val"] | firsts["test"]) & firsts["train"]
    again = split_windows(windows, n_val=6, n_test=9, n_train=20, seed=3, source="text")
    assert torch.equal(again.test, splits.test)
    assert not torch.equal(split_windows(windows, 6, 9, 20, seed=4, source="text").test, splits.test)


def test_too_short_a_text_names_the_counts():
    with pytest.raises(InputError, match=r"my\.txt: 5 windows of 8 tokens, but n_test 4 \+ n_val 2 .* = 7"):
        split_windows(cut_windows(torch.arange(40), 8), n_val=2, n_test=4, n_train=None, seed=0, source="my.txt")
