"""Worked examples: tasks and configs to copy for your own models."""
