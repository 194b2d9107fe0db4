"""Ponder: an open, self-hosted reasoning assistant with an OpenAI-compatible API."""

__version__ = "0.1.0"
