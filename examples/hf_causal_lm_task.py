"""Bring your own decoder LLM: compress a local causal LM of the Llama family, judged by perplexity on your text.

Name the factory in a search config (see examples/hf_causal_lm.yaml):

    task:
      name: examples.hf_causal_lm_task:make_task
      args: {model_path: /path/to/my-llm, text_file: /path/to/held-out.txt}

`model_path` is a folder written by `model.save_pretrained(folder)` and `tokenizer.save_pretrained(folder)`
(config.json, *.safetensors, tokenizer files), or a single `.gguf` file (dequantized to float32 by transformers,
with `gguf` installed; the float model is the teacher). Nothing is downloaded. Llama, SmolLM2, TinyLlama, Qwen2
and Mistral layouts take every knob; any other AutoModelForCausalLM takes bits, distillation and the runtime,
and `hedgerow validate` names the pruning knobs it cannot take.

Quality is perplexity on fixed windows of `text_file` (UTF-8; else Python's documentation): val and test
windows are held out, the rest is distillation text. See orchestrator/tasks/llm/perplexity.py for the exact
definition (window length, stride, no BOS).
"""

from __future__ import annotations

from typing import Any

from orchestrator.tasks.llm.causal_lm import CausalLMTask


def make_task(model_path: str, text_file: str | None = None, **settings: Any) -> CausalLMTask:
    """A causal-LM task on your model (folder or .gguf file) and, optionally, your own text."""
    return CausalLMTask(model_path=model_path, text_file=text_file, **settings)
