"""examples/hf_causal_lm.yaml validates against a user's own causal-LM folder, and validation refuses, naming the field,
what that model cannot take: a depth beyond its layers, pruning knobs on an architecture the table does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.errors import InputError
from orchestrator.search.runner import validate
from tests.llm_models import tiny_llm_folder, write_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hf_causal_lm.yaml"
SMALL = dict(window_tokens=32, train_window_tokens=16, n_val=4, n_test=5, n_train=8, top_k=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("user-llm")
    return tiny_llm_folder(root / "my-llm", layers=6), write_text(root / "runbooks.txt", 2)


def _config(tmp_path: Path, model: Path, text: Path, **space) -> Path:
    config = yaml.safe_load(EXAMPLE.read_text())
    config["task"]["args"].update(model_path=str(model), text_file=str(text), **SMALL)
    config["space"].update(space)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_example_config_validates_with_a_users_folder(files, tmp_path):
    prepared = validate(_config(tmp_path, *files))
    assert prepared.task.generates and prepared.config.objective.max_quality_drop == pytest.approx(0.0487901642)


def test_dropping_as_many_blocks_as_the_model_has_is_refused(files, tmp_path):
    with pytest.raises(InputError, match=r"space\.drop_layers: 6 blocks .* the model has 6, so 0\.\.5"):
        validate(_config(tmp_path, *files, drop_layers={"choices": [0, 6]}))


def test_a_runtime_that_does_not_serve_llms_is_refused(files, tmp_path):
    with pytest.raises(InputError, match=r"space\.runtime: \['onnxruntime'\] do not serve decoder LLMs"):
        validate(_config(tmp_path, *files, runtime={"choices": ["eager", "onnxruntime"]}))


def test_pruning_an_architecture_the_table_does_not_know_lists_what_still_applies(files, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.llm_models import tiny_tokenizer

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2, n_positions=128)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    with pytest.raises(InputError, match=r"space\.drop_layers: .*gpt2.*not in the decoder pruning table.*still apply are bits"):
        validate(_config(tmp_path, folder, files[1]))
    pruning_free = {"drop_layers": 0, "prune_ffn_ratio": 0.0}
    assert validate(_config(tmp_path, folder, files[1], **pruning_free)).task.model_type == "gpt2"
