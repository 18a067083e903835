"""report.html: one self-contained file (inline CSS, figures as data: URIs, no script, no network), every string escaped."""

from __future__ import annotations

from html import escape

from orchestrator.report.content import MEASURED_NOTE, NOT_MEASURED, RUNTIMES_INTRO, Items, Report
from orchestrator.report.loadtest import HELD_UNDER_LOAD_NOTE, NOT_LOAD_TESTED

from orchestrator.report.plots import data_uri
from orchestrator.report.tables import Table

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2329;background:#fff;margin:0}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:34px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
.verdict{font-size:16px;background:#eef6ee;border-left:4px solid #2ca02c;padding:10px 14px;margin:12px 0 16px}
nav{font-size:13px;color:#57606a}nav a{color:#1f6fb4;margin-right:12px;text-decoration:none}
dl.items{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:8px 0}
dl.items dt{font-weight:600;color:#57606a}dl.items dd{margin:0}
table{border-collapse:collapse;margin:8px 0 4px;font-size:12.5px;max-width:100%}
th,td{border:1px solid #d8dee4;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f3f5f7}tr.hl td{background:#fff6d6;font-weight:600}
td.long{font-size:11.5px;color:#3b434b;max-width:520px}
figure{margin:10px 0}figure img{width:min(100%,880px);height:auto;border:1px solid #eef0f2}
figcaption,.note{font-size:12.5px;color:#57606a}
code{background:#f3f5f7;padding:1px 4px;border-radius:3px}
ul.formulas li{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
SECTIONS = [
    ("recommendation", "Recommendation"), ("pareto", "Quality against monthly $"), ("runtimes", "Runtimes"),
    ("cost", "Why this instance"),
    ("threshold", "Pruning threshold"), ("heldout", "Held-out check"), ("mattered", "What mattered"),
    ("failures", "Failures"), ("search-cost", "Search cost"), ("inputs", "Inputs"),
]  # fmt: skip
LONG_COLUMNS = {"reason", "why it is infeasible there", "recipe", "fallbacks"}


def table(t: Table, empty: str = "none") -> str:
    """An HTML table of escaped cells; highlighted rows get class hl."""
    if not t.rows:
        return f'<p class="note">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in t.columns)
    body = []
    for row, hl in zip(t.rows, t.highlight):
        cells = "".join(
            f'<td class="long">{escape(v)}</td>' if col in LONG_COLUMNS else f"<td>{escape(v)}</td>"
            for col, v in zip(t.columns, row)
        )
        body.append(f'<tr class="hl">{cells}</tr>' if hl else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def items(pairs: Items) -> str:
    """Label/value pairs as a definition list."""
    return '<dl class="items">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in pairs) + "</dl>"


def files(pairs: Items) -> str:
    """The run folder's files, linked relative to the report (they sit beside it)."""
    links = []
    for name, what in pairs:
        target = name if "<" not in name else name.split("/")[0] + "/"
        links.append(f'<dt><a href="{escape(target)}">{escape(name)}</a></dt><dd>{escape(what)}</dd>')
    return '<dl class="items">' + "".join(links) + "</dl>"


def figure(svg: str | None, alt: str, caption: str, missing: str) -> str:
    """An embedded SVG figure, or a note where there is nothing to draw."""
    if svg is None:
        return f'<p class="note">{escape(missing)}</p>'
    return (
        f'<figure><img alt="{escape(alt)}" src="{data_uri(svg)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _p(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{escape(text)}</p>'


def render(report: Report) -> str:
    """The whole page."""
    r = report
    fig = r.figures
    shown = [(a, t) for a, t in SECTIONS if a != "runtimes" or r.runtimes is not None]
    nav = "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in shown) + "</nav>"
    importance = (
        [table(r.importance_table), figure(fig.get("importance"), "parameter importance", "Optuna PED-ANOVA importance "
         f"over {r.importance.n_trials} finished trials: which knobs separate the best 10% from the rest.", "")]
        if r.importance.values else [_p(f"Parameter importance: {r.importance.note}.")]
    )  # fmt: skip
    body = [
        f"<h1>{escape(r.title)}</h1>",
        nav,
        f'<p class="verdict">{escape(r.verdict)}</p>',
        _section("recommendation", "Recommendation", items(r.headline),
                 "<h3>Knobs</h3>", table(r.knobs, "no recommended candidate")),
        _section("pareto", "Quality against monthly $",
                 figure(fig.get("pareto"), "Pareto plot: quality against monthly $", r.counts + ". Blue: the Pareto front "
                        "(feasible, not beaten on both quality and $); star: recommended; red crosses: infeasible; "
                        "right-hand strip: trials with no $.", "no trial to plot"),
                 "<h3>Pareto table</h3>", table(r.pareto, "no feasible candidate: the Pareto front is empty"),
                 _p("★ recommended: the cheapest within the quality bound on validation and on the held-out test split. "
                    "Also in pareto.csv.")),
        _section("runtimes", "Runtimes", _p(RUNTIMES_INTRO), table(r.runtimes),
                 f"<p>{escape(r.runtimes_note)}</p>") if r.runtimes else "",
        _section("cost", "Why this instance: the cost model for the recommended candidate",
                 _p(r.explanation_note), table(r.explanation, "no record") if r.explanation else "",
                 "<h3>Measured on the cluster's instance types</h3>",
                 (table(r.measured_on_types) + _p(MEASURED_NOTE)) if r.measured_on_types else _p(NOT_MEASURED),
                 "<h3>Held under load</h3>",
                 (table(r.held_under_load) + _p(HELD_UNDER_LOAD_NOTE)) if r.held_under_load else _p(NOT_LOAD_TESTED)),
        _section("threshold", "Pruning threshold: where quality gives way",
                 figure(fig.get("threshold"), "quality against prune ratio", "Filled: with distillation; hollow: "
                        "without. Other knobs (bits, distillation settings) vary between points.", "no pruned trial finished"),
                 table(r.threshold, "no pruned trial finished")),
        _section("heldout", "Held-out check", table(r.heldout, "no candidates"), _p(r.heldout_note),
                 "<h3>Passed over on the test split</h3>", table(r.passed_over, "none: the cheapest candidate within "
                 "the bound on validation also held on test")),
        _section("mattered", "What mattered", *importance,
                 figure(fig.get("knobs"), "quality and monthly $ against each knob", "Each point is a finished trial.",
                        "no knob varied")),
        _section("failures", "Failures",
                 "<h3>Trials that did not finish</h3>", table(r.failures, "none: every trial finished"),
                 _p("The whole error text of each trial is in trials.csv (column error).") if r.failures.rows else "",
                 "<h3>Infeasible candidates</h3>", table(r.infeasible, "none"),
                 "<h3>Compression fallbacks</h3>", table(r.fallbacks, "none")),
        _section("search-cost", "What the search cost", items(r.search_cost)),
        _section("inputs", "Inputs: enough to recompute every figure", items(r.inputs),
                 "<h3>Formulas</h3>", '<ul class="formulas">' + "".join(f"<li>{escape(x)}</li>" for x in r.formulas) + "</ul>",
                 "<h3>Files in this run folder</h3>", files(r.files)),
    ]  # fmt: skip
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(r.title)}</title><style>{CSS}</style></head>\n"
        f"<body><main>\n" + "\n".join(b for b in body if b) + "\n</main></body></html>\n"
    )
