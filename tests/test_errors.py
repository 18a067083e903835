"""The one way an exception is written as one line, shared by every layer's messages."""

from __future__ import annotations

from orchestrator.errors import first_line


def test_first_line_keeps_the_type_and_the_first_line_of_the_message():
    exc = RuntimeError("\n  could not find a C++ compiler  \nTraceback (most recent call last):\n  ...")
    assert first_line(exc) == "RuntimeError: could not find a C++ compiler"


def test_first_line_is_cut_at_the_limit_and_says_when_there_is_no_message():
    assert first_line(ValueError("x" * 500)) == "ValueError: " + "x" * 300
    assert first_line(ValueError("x" * 500), limit=10) == "ValueError: " + "x" * 10
    assert first_line(KeyError()) == "KeyError: (no message)"
    assert first_line(OSError("   ")) == "OSError: (no message)"
