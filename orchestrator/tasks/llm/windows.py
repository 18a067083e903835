"""Text cut into fixed token windows, split into test, val and distillation windows that never overlap.

The text is tokenized once as a whole (no BOS added) and cut into consecutive, non-overlapping windows of
`window_tokens`; a trailing part shorter than a window is dropped. The windows are shuffled with a seed, then the
first `n_test` are the test split, the next `n_val` the val split and the rest (at most `n_train`) the
distillation text: disjoint by construction, and the same on every run with the same text, tokenizer and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orchestrator.errors import InputError


@dataclass(frozen=True)
class WindowSplits:
    """Token ids [windows, window_tokens] of each split."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def of(self, split: str) -> torch.Tensor:
        """One split's windows."""
        return {"train": self.train, "val": self.val, "test": self.test}[split]


def cut_windows(ids: torch.Tensor, window_tokens: int) -> torch.Tensor:
    """Consecutive non-overlapping windows [n, window_tokens] of a 1-D token sequence; a short tail is dropped."""
    n = len(ids) // window_tokens
    return ids[: n * window_tokens].reshape(n, window_tokens)


def split_windows(
    windows: torch.Tensor, n_val: int, n_test: int, n_train: int | None, seed: int, source: str, min_train: int = 1
) -> WindowSplits:
    """Shuffle the windows with `seed`; test first, then val, then the distillation windows (capped at n_train)."""
    needed = n_val + n_test + min_train
    if len(windows) < needed:
        raise InputError(
            f"{source}: {len(windows)} windows of {windows.shape[1] if windows.dim() == 2 else '?'} tokens, but "
            f"n_test {n_test} + n_val {n_val} + at least {min_train} distillation window(s) = {needed} are needed; "
            "give a longer text, or fewer/shorter windows"
        )
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    if n_train is not None:
        train = train[:n_train]
    return WindowSplits(train=windows[train].clone(), val=windows[val].clone(), test=windows[test].clone())
