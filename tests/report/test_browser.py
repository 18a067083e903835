"""report.html in headless Chromium with no network: it renders, logs nothing to the console, shows the answer."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from orchestrator.report import _format as fmt

pytestmark = pytest.mark.slow


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_screenshot_is_not_blank(chromium, built, tmp_path):
    png = tmp_path / "report.png"
    done = chromium(built["html"].as_uri(), f"--screenshot={png}", "--window-size=1280,2000")
    assert png.is_file(), done.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the page looks blank: too few distinct colours"
    white = sum(n for n, c in colours if c == (255, 255, 255))
    assert white < 0.97 * image.size[0] * image.size[1], "the page is almost all white"


def test_console_is_silent_and_the_recommendation_is_in_the_dom(chromium, run_dir, built):
    done = chromium(built["html"].as_uri(), "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console(done.stderr) == []
    rec = json.loads((run_dir / "summary.json").read_text())["recommended"]
    dom = done.stdout
    assert "<h1>Hedgerow cost report" in dom
    assert rec["instance_type"] in dom and fmt.usd(rec["monthly_usd"]) in dom
    assert f"{fmt.integer(rec['replicas'])} × {rec['instance_type']}" in dom


def test_the_console_check_catches_errors(chromium, tmp_path):
    """The check above is not vacuous: a page with a script error and a blocked fetch is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><img src="https://example.com/x.png"><script>undefined_fn();</script>')
    done = chromium(page.as_uri(), "--enable-logging=stderr", "--v=0", "--dump-dom")
    assert any("Uncaught" in line for line in _console(done.stderr)), done.stderr[-2000:]
