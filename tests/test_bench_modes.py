"""`ponder bench modes` orchestration on the scripted backend (the real-model run is in test_cli)."""

from __future__ import annotations

from pathlib import Path

from ponder import bench_modes, results
from ponder.backends.scripted import ScriptedBackend
from ponder.config import Settings
from ponder.errors import UpstreamError


async def test_a_failing_item_is_recorded_wrong_and_the_run_goes_on(data_dir: Path) -> None:
    calls = []

    def respond(req: object) -> object:
        calls.append(req)
        return UpstreamError("engine fell over") if len(calls) == 1 else "The answer is 18."

    settings = Settings(data_dir=data_dir)  # the GSM8K sample is fetched with pip into its cache
    out = data_dir / "bench-failing.json"
    rows = await bench_modes.run(ScriptedBackend(respond=respond), "scripted", settings, ["instant"], 2, None, None,
                                 1, out)  # fmt: skip
    assert [r.answer.startswith("error: engine fell over") for r in rows] == [True, False]
    assert rows[0].correct is False and len(calls) == 2
    assert results.saved(out, bench_modes.Row)[1].answer == "The answer is 18."
