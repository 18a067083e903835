"""A task whose serving batch cannot be built: every trial fails at measurement time."""

from orchestrator.tasks.digits import DigitsTask


class BrokenServingTask(DigitsTask):
    name = "broken-serving"

    def example_batch(self, batch_size: int):
        raise RuntimeError("this task cannot build a serving batch")


def make_task(**kwargs):
    return BrokenServingTask(**kwargs)
