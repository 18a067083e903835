"""load_task: built-in names, a user's import path with keyword arguments, and clear errors."""

from __future__ import annotations

import pytest

from orchestrator.errors import InputError
from orchestrator.tasks import BUILTIN_TASKS, DigitsTask, Task, load_task
from tests.tasks.user_task import BlobsTask

USER_TASK = "tests.tasks.user_task:make_task"


def test_builtin_digits_by_name():
    task = load_task("digits")
    assert isinstance(task, DigitsTask) and task.name == "digits"
    assert "digits" in BUILTIN_TASKS


def test_builtin_receives_keyword_arguments():
    task = load_task("digits", {"split_seed": 3})
    assert task.settings.split_seed == 3


def test_user_task_by_import_path_with_keyword_arguments():
    task = load_task(USER_TASK, {"n_features": 5, "n_classes": 3, "per_class": 20})
    assert isinstance(task, BlobsTask) and isinstance(task, Task)
    inputs, labels = task.data("train")
    assert inputs.shape[1] == 5 and set(labels.tolist()) == {0, 1, 2}


def test_unknown_name_suggests_the_near_miss_and_names_the_field():
    with pytest.raises(InputError) as info:
        load_task("digit")
    message = str(info.value)
    assert message.startswith("task.name:")
    assert "Did you mean 'digits'?" in message
    assert "pkg.module:factory" in message


def test_field_name_is_the_callers():
    with pytest.raises(InputError, match=r"^study\.task: unknown task 'mnist'"):
        load_task("mnist", field="study.task")


def test_module_that_does_not_import():
    with pytest.raises(InputError, match="cannot import module 'tests.tasks.no_such_module'"):
        load_task("tests.tasks.no_such_module:make_task")


def test_missing_factory_suggests_the_near_miss():
    with pytest.raises(InputError, match="has no callable 'make_tsk'. Did you mean 'make_task'"):
        load_task("tests.tasks.user_task:make_tsk")


@pytest.mark.parametrize("spec", [":make_task", "tests.tasks.user_task:"])
def test_incomplete_import_path(spec):
    with pytest.raises(InputError, match="is not an import path; expected 'pkg.module:factory'"):
        load_task(spec)


def test_factory_returning_something_else_than_a_task():
    with pytest.raises(InputError, match="returned object, expected an orchestrator.tasks.Task"):
        load_task("tests.tasks.user_task:not_a_task")


def test_arguments_the_task_rejects_are_input_errors():
    with pytest.raises(InputError, match=r"rejected its arguments \['n_classes'\]: n_classes must be at least 2"):
        load_task(USER_TASK, {"n_classes": 1})
    with pytest.raises(InputError, match=r"rejected its arguments \['colour'\]"):
        load_task(USER_TASK, {"colour": "red"})
    with pytest.raises(InputError, match="epoch"):
        load_task("digits", {"epoch": 3})  # pydantic's error is a ValueError too
