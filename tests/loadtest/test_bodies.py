"""Request bodies shaped as the Serve app parses them, from the task's own val examples."""

from __future__ import annotations

import pytest
import torch

from orchestrator.deploy.serve import parse_inputs, parse_named_inputs, parse_texts
from orchestrator.deploy.manifest import InputSpec
from orchestrator.errors import InputError
from orchestrator.loadtest.bodies import shape_bodies


def test_tensor_bodies_hold_consecutive_val_examples_the_app_parses():
    val = torch.arange(10 * 64, dtype=torch.float32).reshape(10, 1, 8, 8)
    bodies = shape_bodies(val, examples_per_request=3)
    assert len(bodies) == 3  # 10 // 3: a body never holds fewer examples than asked
    parsed = [parse_inputs(b, (1, 8, 8)) for b in bodies]
    assert all(p.shape == (3, 1, 8, 8) for p in parsed)
    assert torch.equal(torch.cat(parsed), val[:9])
    one = shape_bodies(val, 1, max_bodies=4)
    assert len(one) == 4 and parse_inputs(one[2], (1, 8, 8)).shape == (1, 1, 8, 8)


def test_text_bodies_hold_the_tasks_texts():
    texts = [f"text {i}" for i in range(5)]
    bodies = shape_bodies(texts, 2)
    assert [parse_texts(b) for b in bodies] == [["text 0", "text 1"], ["text 2", "text 3"]]


def test_named_bodies_hold_each_named_tensor():
    ids = torch.arange(12).reshape(4, 3)
    named = {"input_ids": ids, "attention_mask": torch.ones(4, 3, dtype=torch.long)}
    specs = {"input_ids": InputSpec(shape=[3], dtype="int64"), "attention_mask": InputSpec(shape=[3], dtype="int64")}
    bodies = shape_bodies(named, 2)
    parsed = parse_named_inputs(bodies[1], specs)
    assert torch.equal(parsed["input_ids"], ids[2:4])


def test_more_examples_per_request_than_the_split_holds_is_refused():
    with pytest.raises(InputError, match="--examples-per-request: 11 examples per request, but the task's val split has 10"):
        shape_bodies(torch.zeros(10, 2), 11)
