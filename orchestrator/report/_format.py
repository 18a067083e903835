"""How figures are written in the report: one function per kind of number, shared by HTML, Markdown and plots."""

from __future__ import annotations

import math
import re
from typing import Any

from orchestrator.runtimes import REGISTRY

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_WRAPPED = re.compile(r"^RayTaskError\((\w+)\)")

DASH = "—"


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and pd.NA (pd.NA != pd.NA raises TypeError in bool())
    except TypeError:
        return True


def usd(value: Any, cents: bool = True) -> str:
    """$1,234.56 (or $1,235 without cents); a dash where there is no figure."""
    if missing(value):
        return DASH
    return f"${float(value):,.2f}" if cents else f"${float(value):,.0f}"


def usd_rate(value: Any) -> str:
    """An hourly price as the catalog writes it: $0.145/h."""
    return DASH if missing(value) else f"${float(value):.10g}/h"


def quality(value: Any) -> str:
    """A quality figure, 4 decimals."""
    return DASH if missing(value) else f"{float(value):.4f}"


def drop(value: Any) -> str:
    """A quality drop against the baseline, signed where quality improved."""
    if missing(value):
        return DASH
    v = float(value)
    return f"{v:.4f}" if v >= 0 else f"{v:.4f} (better)"


def ci(low: Any, high: Any) -> str:
    """A 95% interval: [0.9718, 0.9957]."""
    if missing(low) or missing(high):
        return DASH
    return f"[{float(low):.4f}, {float(high):.4f}]"


def drop_ci(value: Any, low: Any, high: Any) -> str:
    """A drop with its paired 95% interval where one was measured: 0.0042 [0.0010, 0.0080]."""
    text = drop(value)
    return text if missing(low) or missing(high) or text == DASH else f"{text} {ci(low, high)}"


def ratio(value: Any) -> str:
    """0.257× style multiplier."""
    return DASH if missing(value) else f"{float(value):.3g}×"


def percent(value: Any) -> str:
    """A fraction as a percentage: 0.886 -> 88.6%."""
    return DASH if missing(value) else f"{float(value) * 100:.1f}%"


def integer(value: Any) -> str:
    """1,234 (replicas, counts)."""
    return DASH if missing(value) else f"{int(round(float(value))):,}"


def number(value: Any, digits: int = 4) -> str:
    """A plain figure with `digits` significant digits."""
    if missing(value):
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    return f"{float(value):.{digits}g}"


def sps(value: Any) -> str:
    """Samples per second, no decimals."""
    return DASH if missing(value) else f"{float(value):,.0f} sps"


def ms(value: Any) -> str:
    """Milliseconds, 3 significant digits."""
    return DASH if missing(value) else f"{float(value):.3g} ms"


def size(value: Any) -> str:
    """Bytes as KiB / MiB / GiB (binary units), 3 significant digits."""
    if missing(value):
        return DASH
    v = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.3g} {unit}" if unit != "B" else f"{v:.0f} B"
        v /= 1024
    return f"{v:.3g} GiB"  # pragma: no cover


def yes_no(value: Any) -> str:
    """yes / no; a dash where unknown."""
    return DASH if missing(value) else ("yes" if bool(value) else "no")


def seconds(value: Any) -> str:
    """A duration in seconds, 3 significant digits, unit left to the column header: 0.412."""
    return DASH if missing(value) else f"{float(value):.3g}"


def runtime(value: Any) -> str:
    """A runtime knob as a reader knows it: onnxruntime -> ONNX Runtime (a runtime no longer registered: its name)."""
    if missing(value):
        return DASH
    return REGISTRY.get(str(value)).label if str(value) in REGISTRY.names else str(value)


def archs(value: Any) -> str:
    """The kernel_archs column for reading: 'x86_64' -> 'x86_64 only', 'x86_64,arm64' -> 'x86_64, arm64'."""
    if missing(value) or str(value).strip() == "":
        return DASH
    names = [a.strip() for a in str(value).split(",") if a.strip()]
    if names == ["any"]:
        return "any CPU"
    return f"{names[0]} only" if len(names) == 1 else ", ".join(names)


def hours(value: Any) -> str:
    """Hours, 4 significant digits."""
    return DASH if missing(value) else f"{float(value):.4g} h"


def finite(value: Any) -> bool:
    """A real, finite number."""
    if missing(value) or isinstance(value, (str, bool)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def short_error(text: Any) -> str:
    """A trial's error in one readable line: terminal colours removed, a Ray-wrapped traceback cut to its cause.

    `RayTaskError(X): <remote traceback> ... module.X: message` becomes `X: message`;
    trials.csv keeps the whole text.
    """
    if missing(text):
        return "no reason recorded"
    clean = " ".join(_ANSI.sub("", str(text)).split())
    wrapped = _WRAPPED.match(clean)
    if wrapped:
        inner = wrapped.group(1)
        at = clean.rfind(f"{inner}: ")
        if at > wrapped.end():
            return f"{inner}: {clean[at + len(inner) + 2:]}"
    return clean
