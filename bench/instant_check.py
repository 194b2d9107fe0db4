"""What Instant answers, read from a `ponder bench modes` run's bare rows.

    .venv/bin/python bench/instant_check.py bench/results/gsm8k-modes-100.json

Instant sends bare's request unchanged and only cleans the answer it streams
(`ponder.formats.clean`), and every row starts from an empty cache, so on a given
item its text is bare's text cleaned. This puts every bare row of the run through
the cleaner, grades it as the bench grades, and prints how many bare and the
cleaned texts got right (and the cleaned texts without the closing line that restates
a boxed number the text does not end on); where the run has `instant` rows too, it checks that each
is word for word the cleaned bare text of its item, so the derivation can be trusted
only as far as those rows reach. It grades as GSM8K is graded (the number the text
commits to), so it takes the rows of a run on GSM8K only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ponder.evals import matches
from ponder.formats.clean import AnswerCleaner, clean
from ponder.modes import answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a `ponder bench modes --json` file with bare rows")
    args = parser.parse_args()
    rows = json.loads(args.results.read_text())["rows"]
    bare = {r["id"]: r for r in rows if r["config"] == "bare" and r.get("data", "gsm8k") == "gsm8k"}
    instant = {r["id"]: r for r in rows if r["config"] == "instant" and r["id"] in bare}
    if not bare:
        raise SystemExit(f"{args.results}: no bare rows on GSM8K")
    cleaned = {i: clean(r["answer"]) for i, r in bare.items()}
    right = sum(matches(answers.extract(cleaned[i]), r["expected"]) for i, r in bare.items())
    print(f"bare: {sum(r['correct'] for r in bare.values())}/{len(bare)} right")
    print(f"bare's answers cleaned as Instant cleans them: {right}/{len(bare)} right")
    unstated = sum(matches(answers.extract(_without_restating(r["answer"])), r["expected"]) for r in bare.values())
    print(f"the same without the restated boxed number: {unstated}/{len(bare)} right")
    if instant:
        same = sum(cleaned[i].strip() == r["answer"].strip() for i, r in instant.items())
        print(f"instant rows word for word the cleaned bare text: {same}/{len(instant)} (bare's cleaner at their run)")


def _without_restating(text: str) -> str:
    cleaner = AnswerCleaner(restate=False)
    return cleaner.feed(text) + cleaner.flush()


if __name__ == "__main__":
    main()
