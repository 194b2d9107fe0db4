"""Text-level formats: stop sequences (and, later, reasoning and tool-call parsers)."""
