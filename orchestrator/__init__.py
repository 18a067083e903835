"""Hedgerow: find the cheapest compressed model that still meets its quality bar."""

__version__ = "0.2.0"
