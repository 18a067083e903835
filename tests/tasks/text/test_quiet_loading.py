"""Loading a Hugging Face folder prints nothing of transformers' own below warnings, and leaves its settings as found."""

from __future__ import annotations

import logging

import pytest

from orchestrator.tasks.text.encoder import load_encoder, quiet_loading
from tests.tasks.text.tiny_bert import save_tiny_bert

transformers = pytest.importorskip("transformers")
from transformers.utils import logging as hf_logging  # noqa: E402


def test_loading_shows_no_progress_bar_and_restores_transformers_settings(tmp_path, capsys):
    folder = save_tiny_bert(tmp_path)
    capsys.readouterr()
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    try:
        load_encoder(folder, seq_len=16)
        captured = capsys.readouterr()
        assert "Loading weights" not in captured.err + captured.out, captured.err[-500:]
        assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_warning()


def test_warnings_still_reach_the_user_while_loading(caplog):
    logger = hf_logging.get_logger("transformers.modeling_utils")
    with caplog.at_level(logging.INFO, logger="transformers"), quiet_loading():
        logger.info("an info line transformers prints while loading")
        logger.warning("a real warning")
    messages = [r.getMessage() for r in caplog.records]
    assert "a real warning" in messages and "an info line transformers prints while loading" not in messages


def test_only_the_two_known_library_messages_are_dropped(caplog):
    from orchestrator.noise import drop_known_noise

    drop_known_noise()
    drop_known_noise()  # idempotent: one filter per logger
    torchao, pytree = logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")
    assert len(torchao.filters) == len(set(map(type, torchao.filters)))
    with caplog.at_level(logging.WARNING):
        torchao.warning("Failed to load /x/torchao/_C_mxfp8.so: Could not load this library")
        pytree.warning("%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type.", "X")
        torchao.warning("Failed to load the int4 config: a real problem")
        pytree.warning("another pytree warning")
    assert [r.getMessage() for r in caplog.records] == ["Failed to load the int4 config: a real problem", "another pytree warning"]
