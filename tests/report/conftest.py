"""Report fixtures: a copy of the session's small real search (real Ray), its report built once, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="package")
def run_dir(fast_search_run, tmp_path_factory) -> Path:
    """A copy of the session's finished fast search (8 trials; 2:4 sparsity fails on a CPU): report tests rebuild into it."""
    copy = tmp_path_factory.mktemp("report-run") / fast_search_run.path.name
    shutil.copytree(fast_search_run.path, copy, symlinks=True)
    return copy


@pytest.fixture(scope="package")
def built(run_dir) -> dict[str, Path]:
    """The report of run_dir, built once."""
    from orchestrator.report.build import build_report

    return build_report(run_dir)


def _install_chromium() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("headless Chromium is missing and apt-get is unavailable to install Debian's chromium package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """run(url, *flags) -> CompletedProcess of headless Chromium with no network (proxy to a closed port)."""
    if not CHROMIUM.exists():
        _install_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(url: str, *flags: str) -> subprocess.CompletedProcess:
        cmd = [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            *flags, url,
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180)

    return run
