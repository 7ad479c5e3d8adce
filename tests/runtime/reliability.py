"""Counts the hardening tests record for docs/reliability.md (build/reliability.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

OUT = Path(
    os.environ.get(
        "VAEGAN_RELIABILITY_OUT", Path(__file__).resolve().parents[2] / "build" / "reliability.json"
    )
)


def record(section: str, **counts) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[section] = counts
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(OUT)
