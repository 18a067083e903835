"""What a killed export leaves behind is cleaned by the next one, never what a running export is writing; progress
lines of long passes."""

from __future__ import annotations

import signal
import subprocess
import sys

from orchestrator.deploy.export import held, remove_stale_staging
from orchestrator.deploy.progress import PassProgress

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)"


def test_a_staging_folder_is_removed_once_the_export_writing_it_is_killed(tmp_path):
    staging = tmp_path / ".trial1.partial-1234abcd"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"half written")
    writer = subprocess.Popen([sys.executable, "-c", HOLD, str(staging)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "held"
        assert remove_stale_staging(tmp_path) == [] and staging.is_dir()  # its export is running: left alone
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    assert remove_stale_staging(tmp_path) == [staging] and not staging.exists()


def test_only_what_no_export_holds_is_removed_and_never_the_only_copy_of_an_export(tmp_path):
    stale = tmp_path / ".a.partial-00000001"
    busy = tmp_path / ".b.partial-00000002"
    replaced = tmp_path / ".c.old-00000003"  # its replacement "c" is in place: the previous version, left by a kill
    only_copy = tmp_path / ".d.old-00000004"  # killed between the two renames: "d" is gone, this is the export
    for folder in (stale, busy, replaced, only_copy, tmp_path / "c", tmp_path / "e"):
        folder.mkdir()
    (tmp_path / ".f.partial-00000005").write_text("a file, not a staging folder")
    with held(busy):
        removed = remove_stale_staging(tmp_path)
    assert removed == [stale, replaced]
    assert busy.is_dir() and only_copy.is_dir() and (tmp_path / "c").is_dir() and (tmp_path / "e").is_dir()
    assert (tmp_path / ".f.partial-00000005").is_file()


def test_a_long_pass_reports_texts_done_of_total_at_most_once_per_interval_and_when_it_ends():
    now, lines = [0.0], []
    progress = PassProgress(lines.append, unit="texts", every_s=10.0, clock=lambda: now[0])
    for done in range(32, 100, 32):  # a quick pass: nothing said
        now[0] += 1.0
        progress(done, 96)
    assert lines == []
    for done in range(32, 4500 + 32, 32):  # a slow one: 141 chunks, 1 s each
        now[0] += 1.0
        progress(min(done, 4500), 4500)
    # Timed from its first chunk: a line 10 s after it (11 chunks done), then one per 10 s, the last at its end.
    assert lines[0] == "  352 of 4,500 texts (10 s)" and lines[-1] == "  4,500 of 4,500 texts (140 s)"
    assert len(lines) == 14
