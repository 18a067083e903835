"""`load(...).predict` and the Serve app check named inputs the same way: shorter sequences where the manifest's
variable_dims allow them, and the same words for a batch that does not fit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from orchestrator.deploy.loader import LoadedModel
from orchestrator.deploy.manifest import Architecture, InputSpec
from orchestrator.deploy.serve import Predictor, ServeArgs


class MaskedSum(nn.Module):
    """One output per example: the sum of its unmasked ids, whatever the sequence length."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (input_ids * attention_mask).sum(dim=1, keepdim=True).float()


def loaded(variable_dims: list[int]) -> LoadedModel:
    spec = InputSpec(shape=[8], dtype="int64", variable_dims=variable_dims)
    arch = Architecture(
        weights_format="float", input_shape=[], teacher_fingerprint="0" * 64,
        named_inputs={"attention_mask": spec, "input_ids": spec},
    )  # fmt: skip
    manifest = SimpleNamespace(architecture=arch)
    return LoadedModel(manifest=manifest, root=Path("."), runtime="torch", module=MaskedSum(), device=torch.device("cpu"))  # type: ignore[arg-type]


def serving(model: LoadedModel) -> Predictor:
    return Predictor(ServeArgs(model_path="unused"), loader=lambda *args, **kwargs: model)


def batch(n: int, length: int) -> dict[str, torch.Tensor]:
    ids = torch.arange(n * length).reshape(n, length)
    return {"input_ids": ids, "attention_mask": torch.ones(n, length, dtype=torch.int64)}


def as_request(inputs: dict[str, torch.Tensor]) -> dict:
    return {"inputs": {name: value.tolist() for name, value in inputs.items()}}


def test_both_take_shorter_sequences_along_a_variable_dimension():
    model = loaded(variable_dims=[0])
    short, full = batch(2, 5), batch(3, 8)
    assert model.predict(short).shape == (2, 1)
    single = {"inputs": {name: value[0].tolist() for name, value in batch(1, 3).items()}}  # one example, not a list
    answers = serving(model).predict_requests([as_request(short), as_request(full), single, as_request(batch(1, 5))])
    assert [a.get("error") for a in answers] == [None] * 4
    assert torch.equal(torch.tensor(answers[0]["outputs"]), model.predict(short))
    assert torch.equal(torch.tensor(answers[1]["outputs"]), model.predict(full))
    assert torch.equal(torch.tensor(answers[2]["outputs"]), model.predict(batch(1, 3)))
    assert torch.equal(torch.tensor(answers[3]["outputs"]), model.predict(batch(1, 5)))


@pytest.mark.parametrize(
    ("variable_dims", "inputs", "words"),
    [
        ([0], batch(2, 9), "input 'attention_mask': expected (N, 8) (dimensions 1 may be shorter), got (2, 9)"),
        ([], batch(2, 5), "input 'attention_mask': expected (N, 8), got (2, 5)"),
        ([0], {"input_ids": batch(2, 4)["input_ids"], "attention_mask": batch(3, 4)["attention_mask"]},
         "the named inputs disagree on the batch size: [2, 3]"),
        ([0], {name: value.reshape(2, 2, 4) for name, value in batch(2, 8).items()}, "expected (N, 8)"),
        ([0], {"input_ids": batch(2, 5)["input_ids"], "attention_mask": batch(2, 6)["attention_mask"]},
         "the inputs of variable length disagree on it: attention_mask [6], input_ids [5]"),
    ],
)  # fmt: skip
def test_both_refuse_what_does_not_fit_in_the_same_words(variable_dims, inputs, words):
    model = loaded(variable_dims)
    with pytest.raises(ValueError) as refused:
        model.predict(inputs)
    assert words in str(refused.value)
    fine = batch(1, 8)
    bad, good = serving(model).predict_requests([as_request(inputs), as_request(fine)])
    assert bad == {"error": str(refused.value)}
    assert torch.equal(torch.tensor(good["outputs"]), model.predict(fine))


def test_a_request_without_examples_is_refused():
    (answer,) = serving(loaded([0])).predict_requests([{"inputs": {"input_ids": [], "attention_mask": []}}])
    assert "input 'attention_mask': expected (N, 8)" in answer["error"]
