"""Prompts live in YAML files next to this module; strings render with Jinja2's
StrictUndefined, so a missing variable is an error, not an empty string."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

_DIR = Path(__file__).parent / "prompts"
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


@cache
def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((_DIR / f"{name}.yaml").read_text())
    if not isinstance(data, dict):
        raise ValueError(f"prompt file {name}.yaml must hold a mapping")
    return data


def render(template: str, **values: Any) -> str:
    return _ENV.from_string(template).render(**values).strip()
