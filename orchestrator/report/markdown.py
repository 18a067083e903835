"""report.md: the same content as report.html in GitHub-flavoured Markdown (figures are in report.html)."""

from __future__ import annotations

from orchestrator.report.content import MEASURED_NOTE, NOT_MEASURED, RUNTIMES_INTRO, Items, Report
from orchestrator.report.loadtest import HELD_UNDER_LOAD_NOTE, NOT_LOAD_TESTED
from orchestrator.report.tables import Table


def cell(text: str) -> str:
    """A table cell: pipes escaped, one line."""
    out = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
    return out.replace("\r", " ").replace("\n", " ")


def inline(text: str) -> str:
    """Running text: characters Markdown would read as markup escaped."""
    out = str(text).replace("\\", "\\\\")
    for ch in ("*", "_", "`", "<", ">", "[", "]", "|"):
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def table(t: Table | None, empty: str = "none") -> str:
    """A pipe table; highlighted rows in bold."""
    if t is None or not t.rows:
        return f"_{inline(empty)}_\n"
    lines = ["| " + " | ".join(cell(c) for c in t.columns) + " |", "|" + "---|" * len(t.columns)]
    for row, hl in zip(t.rows, t.highlight):
        cells = [cell(v) for v in row]
        if hl:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def items(pairs: Items) -> str:
    """Label/value pairs as a list."""
    return "\n".join(f"- **{inline(k)}**: {inline(v)}" for k, v in pairs) + "\n"


def runtimes(r: Report) -> str:
    """The Runtimes section, or nothing where the run searched one runtime."""
    if r.runtimes is None:
        return ""
    return (
        "## Runtimes\n\n"
        f"{inline(RUNTIMES_INTRO)}\n\n" + table(r.runtimes) + f"\n{inline(r.runtimes_note)}\n"
    )


def render(report: Report) -> str:
    """The whole document."""
    r = report
    importance = (
        table(r.importance_table)
        + f"\nOptuna PED-ANOVA importance over {r.importance.n_trials} finished trials.\n"
        if r.importance.values
        else f"Parameter importance: {inline(r.importance.note)}.\n"
    )
    parts = [
        f"# {inline(r.title)}\n",
        f"> {inline(r.verdict)}\n",
        "Plots are in `report.html` (the same folder); every trial is in `trials.csv`.\n",
        "## Recommendation\n",
        items(r.headline),
        "### Knobs\n",
        table(r.knobs, "no recommended candidate"),
        "## Quality against monthly $: the Pareto table\n",
        f"{inline(r.counts)}. Bold: the recommended candidate (★). Also in `pareto.csv`.\n",
        table(r.pareto, "no feasible candidate: the Pareto front is empty"),
        runtimes(r),
        "## Why this instance: the cost model for the recommended candidate\n",
        f"{inline(r.explanation_note)}\n",
        table(r.explanation, "no record") if r.explanation else "",
        "### Measured on the cluster's instance types\n",
        (table(r.measured_on_types) + f"\n{inline(MEASURED_NOTE)}\n") if r.measured_on_types else f"{inline(NOT_MEASURED)}\n",
        "### Held under load\n",
        (table(r.held_under_load) + f"\n{inline(HELD_UNDER_LOAD_NOTE)}\n") if r.held_under_load else f"{inline(NOT_LOAD_TESTED)}\n",
        "## Pruning threshold: where quality gives way\n",
        "Other knobs (bits, distillation settings) vary between trials.\n",
        table(r.threshold, "no pruned trial finished"),
        "## Held-out check\n",
        table(r.heldout, "no candidates"),
        f"\n{inline(r.heldout_note)}\n",
        "### Passed over on the test split\n",
        table(r.passed_over, "none: the cheapest candidate within the bound on validation also held on test"),
        "## What mattered\n",
        importance,
        "## Failures\n",
        "### Trials that did not finish\n",
        table(r.failures, "none: every trial finished"),
        "\nThe whole error text of each trial is in `trials.csv` (column `error`).\n" if r.failures.rows else "",
        "### Infeasible candidates\n",
        table(r.infeasible, "none"),
        "### Compression fallbacks\n",
        table(r.fallbacks, "none"),
        "## What the search cost\n",
        items(r.search_cost),
        "## Inputs: enough to recompute every figure\n",
        items(r.inputs),
        "### Formulas\n",
        "\n".join(f"- `{x}`" for x in r.formulas) + "\n",
        "### Files in this run folder\n",
        "\n".join(f"- `{k}`: {inline(v)}" for k, v in r.files) + "\n",
    ]
    return "\n".join(p for p in parts if p)
