"""A new runtime is one class and one registration: the recipe, the search space and the report pick it up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    '''
    from orchestrator.runtimes import REGISTRY, EagerRuntime


    class ToyRuntime(EagerRuntime):
        """Eager's module under another name, for float32 only: stands in for a new runtime's module."""

        name = "toy"
        label = "Toy Runtime"
        aliases = ("toy-old",)
        bits = (32,)
        loads_anywhere = False


    REGISTRY.add(ToyRuntime())  # what runtimes/__init__.py's one line does

    import pytest
    from orchestrator.compress import Recipe
    from orchestrator.techniques.domains import Choices
    from orchestrator.deploy.manifest import ServingRuntime
    from orchestrator.errors import InputError
    from orchestrator.report import _format
    from orchestrator.search.space import check_runtimes

    assert Recipe(runtime="toy").stages() == [] and Recipe(runtime="toy").key() != Recipe().key()
    with pytest.raises(ValueError, match="runtime: 'toy' serves float32 models \\\\(bits 32\\\\), got bits=8"):
        Recipe(runtime="toy", bits=8)
    with pytest.raises(InputError, match=r"space.runtime: \\['toy'\\] serve float32 models, and space.bits offers only \\[8\\]"):
        check_runtimes({"runtime": Choices(choices=["toy"]), "bits": 8}, "cpu", 0)
    assert ServingRuntime(name="toy-old", library="toy", version=None, loader_runtime="toy").name == "toy"
    assert _format.runtime("toy") == "Toy Runtime"
    print("PLUGGED IN")
    '''
)


def test_a_registered_runtime_reaches_the_recipe_space_manifest_and_report():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "PLUGGED IN" in done.stdout
