"""The embedded llama.cpp runtime."""
