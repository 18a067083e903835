"""Defaults shared by the CLI and the engine, in a module that imports nothing heavy."""

DEFAULT_TOLERANCE = 0.005  # largest |rebuilt - trial| validation quality: half a point of accuracy
