"""The figures of docs/reliability.md, counted from what the tests really did (build/reliability.json).

Tests never write constants here. A sweep counts the inputs it tried (`tried`), a test marked
`@pytest.mark.reliability(section, key)` is counted by its real outcome (passed or failed) by the
hook in tests/conftest.py, and measured figures (`measured`) are what a test observed. Everything is
written once, when the session ends, so no test depends on running after another.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

OUT = Path(
    os.environ.get(
        "VAEGAN_RELIABILITY_OUT", Path(__file__).resolve().parents[2] / "build" / "reliability.json"
    )
)
TRIED: defaultdict[str, Counter] = defaultdict(Counter)  # section -> input kind -> examples tried
OUTCOMES: defaultdict[str, Counter] = defaultdict(Counter)  # section -> "key passed"/"key failed" -> tests
MEASURED: dict[str, dict[str, Any]] = {}


def tried(section: str, kind: str) -> None:
    TRIED[section][kind] += 1


def measured(section: str, **values: Any) -> None:
    MEASURED[section] = values


def write() -> None:
    """Merge this session's counts into OUT (sections another session wrote are kept)."""
    if not (TRIED or OUTCOMES or MEASURED):
        return
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    for section, counts in TRIED.items():
        data[section] = dict(counts)
    for section, counts in OUTCOMES.items():  # merged per case: suites split over runs add up
        cases = {k.rsplit(" ", 1)[0] for k in counts}
        kept = {k: v for k, v in data.get(section, {}).items() if k.rsplit(" ", 1)[0] not in cases}
        data[section] = {**kept, **counts}  # a case run again replaces its passed and failed counts
    data.update(MEASURED)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(OUT)
