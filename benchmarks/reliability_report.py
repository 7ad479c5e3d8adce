"""Write docs/reliability.md from the counts the hardening tests recorded (build/reliability.json).

make test                                   # runs the sweep, records build/reliability.json
python benchmarks/reliability_report.py     # -> docs/results/reliability.json, docs/reliability.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import docs  # noqa: E402
from vaegan.bench.measure import provenance  # noqa: E402
from vaegan.core.io import write_json  # noqa: E402

RESULTS_SCHEMA = 1  # docs/results/reliability.json (benchmarks/docs.py renders docs/reliability.md from it)


def main(
    src: Path = ROOT / "build" / "reliability.json",
    dst: Path = ROOT / "docs" / "results" / "reliability.json",
) -> None:
    """Copy the test run's counts into a results file with its provenance, then render the page."""
    write_json(
        dst,
        {
            "producer": "benchmarks/reliability_report.py:RESULTS_SCHEMA",
            "schema_version": RESULTS_SCHEMA,
            "provenance": provenance("make test"),
            "counts": json.loads(src.read_text()),
        },
    )
    print(f"-> {dst}")
    docs.main([])


def page_lines(d: dict) -> list[str]:
    """docs/reliability.md's body, from the counts the tests recorded."""
    api, http, art = d.get("runtime_api", {}), d.get("http_api", {}), d.get("artifacts", {})
    kills, over = d.get("training_kills", {}), d.get("overload", {})
    # counted by outcome: "<what> passed" / "<what> failed" per test (tests/conftest.py)
    corruptions = sum(v for k, v in art.items() if k.startswith("corruption refused"))
    edits = sum(v for k, v in art.items() if k.startswith("manifest edit refused"))
    refused = art.get("corruption refused passed", 0) + art.get("manifest edit refused passed", 0)
    lines = [
        "Every figure below was recorded by the test suite itself (`make test`; the tests in",
        "`tests/runtime/test_hardening.py`, `tests/core/test_manifest_trust.py`, `test_server_limits.py` and `tests/test_reliability.py`),",
        "counted from what the tests really did (inputs tried, tests passed or failed), and written to",
        "`build/reliability.json`, copied with its provenance to `docs/results/reliability.json` by",
        "`benchmarks/reliability_report.py`; `make docs` renders this page from it.",
        "Each case must get its documented answer: a typed `InputError`/`ArtifactError` from the API, a 4xx JSON",
        "error or a 503 from the server, never a crash, a hang or a wrong result.",
        "",
        "## Runtime API (hypothesis, property-based)",
        "",
        "| surface | inputs tried | outcome |",
        "|---|---:|---|",
        f"| `decode(z)`: any dtype, 0-5 dims, sides 0-20 | {api.get('decode', 0)} | valid images or `InputError` |",
        f"| `decode(z)`: NaN, ±inf, huge finite values | {api.get('decode_values', 0)} | `InputError` for non-finite "
        "(also values beyond float32); images otherwise |",
        f"| `encode(images)`: any dtype and shape | {api.get('encode', 0)} | (mu, logvar) or `InputError` |",
        f"| `sample(n, seed, temperature)`: ints to ±1e12, floats, NaN, strings, None, bools | {api.get('sample', 0)} "
        "| images or `InputError` |",
        "",
        "## HTTP API (a live uvicorn server on loopback, hypothesis-generated requests)",
        "",
        "| requests | answers |",
        "|---|---|",
    ]
    for kind, label in (
        ("json", "arbitrary JSON to /v1/sample"),
        ("bytes", "arbitrary bytes to both POST endpoints"),
        ("png", "valid PNGs of any size and mode to /v1/reconstruct"),
    ):
        parts = {k.split()[1]: v for k, v in http.items() if k.startswith(kind + " ")}
        total = sum(parts.values())
        lines.append(
            f"| {total} {label} | " + ", ".join(f"{n} × {code}" for code, n in sorted(parts.items())) + " |"
        )
    lines += [
        "",
        "No request crashed the server: `/healthz` answers after the sweep, and every non-200 carried a JSON",
        "`error` saying what was wrong.",
        "",
        "## Corrupted artifacts",
        "",
        f"{corruptions} corruptions (truncated ONNX, flipped bytes, a missing file, a changed OpenVINO",
        f"weights file) and {edits} manifest edits (a changed sha256, a path pointed at another",
        "real file, a truncated manifest, a malformed artifact list): "
        f"{refused} of {corruptions + edits} refused at load",
        "with an `ArtifactError` naming the file (the sha256 check) or the manifest (each count is a test that",
        "passed or failed in that run, not a constant).",
        "",
        "## Training killed with SIGKILL",
        "",
        f"{kills.get('sigkills', 0)} `kill -9`s of `vaegan train` (one during start-up, the rest after steps "
        f"{', '.join(map(str, kills.get('kill_after_steps', [])[1:]))}), each followed by `vaegan train --resume`.",
        f"After every kill that followed a checkpoint ({kills.get('run_dir_readable_after_kill', 0)}), the run dir",
        "loaded cleanly (train state, weights, metrics). Final step count "
        f"{kills.get('final_step')} of {kills.get('expected_step')}; metrics.jsonl has each logged step exactly once.",
        "",
        "## The server under overload, then SIGTERM",
        "",
        "`vaegan serve` with `--max-queue 1024 --max-batch 16` (images), three bounded waves of 48 concurrent requests for",
        f"512 images each on loopback: {over.get('requests', 0)} requests, {over.get('completed', 0)} completed (200),",
        f"{over.get('refused_503', 0)} refused with 503 and `Retry-After: 1`, none lost or errored. Median time to",
        f"a 503: {over.get('median_503_s', 0):.3f} s (2-core machine, all 48 clients on the same cores) against",
        f"{over.get('median_200_s', 0):.3f} s for a completed request. Server memory grew by "
        f"{over.get('rss_growth_mib', 0)} MiB.",
        "",
        f"SIGTERM with {over.get('sigterm_in_flight', 0)} requests in flight: {over.get('sigterm_answered_200', 0)} "
        "accepted ones were answered with 200, the rest refused cleanly (503 or connection refused once the",
        "listener closed), and the process shut down through uvicorn's graceful path (`Application shutdown",
        "complete`, no traceback).",
        "",
        "## Trust boundaries (tests/core/test_manifest_trust.py, test_server_limits.py)",
        "",
        "Each figure is the number of tests that passed / failed in that run.",
        "",
        "| case | passed | failed |",
        "|---|---:|---|",
        *[
            f"| {label} | {sec.get(key + ' passed', 0)} | {sec.get(key + ' failed', 0)} |"
            for label, sec, key in (
                (
                    "valid JSON with wrong content (ints for hashes, escaping paths' neighbours, wrong sizes, "
                    "swapped files or components) refused naming the field",
                    d.get("manifest", {}),
                    "wrong content refused",
                ),
                (
                    "`/v1/sample` n=1 answered within 5 s under 48 expensive uploads and 200 idle sockets, "
                    "`/healthz` 200 throughout",
                    d.get("server", {}),
                    "sample answered under a reconstruct flood and idle sockets",
                ),
            )
        ],
        "",
        *_round_section(
            d.get("round2", {}),
            "Second attack round (tests/runtime/test_serve_attacks.py, test_bad_files.py, tests/export/test_reexport.py,\n"
            "test_export_model.py)",
            "Every failure of the second attack round (issue 20) has a test: the serving cases against a real\n"
            "`vaegan serve` over HTTP and gRPC, the file and CLI cases through the real CLI.",
        ),
        *_round_section(
            d.get("round3", {}),
            "Third attack round (tests/trainer/test_run_dir.py, test_data.py, tests/runtime/test_prior_attacks.py,\n"
            "test_serve_errors.py, tests/export/test_reload.py, test_reexport.py)",
            "Every failure of the third attack round (issue 29) has a test: `train --out` on the user's files, a\n"
            "bad prior.npz (re-signed in the manifest, as an attacker who can write the dir would) through\n"
            "`Sampler.load`, `vaegan sample`, `doctor` and `info`, engine errors and malformed requests against\n"
            "real HTTP and gRPC servers, reloads under 64 clients against a real `vaegan serve`.",
        ),
    ]
    return lines


def _round_section(counts: dict[str, int], title: str, intro: str) -> list[str]:
    """An attack round's table: each case, the test cases that passed and failed in that run."""
    cases = dict.fromkeys(k.rsplit(" ", 1)[0] for k in counts)
    return [
        f"## {title}",
        "",
        intro + " Each figure is the number of test cases that passed / failed in that run.",
        "",
        "| case | passed | failed |",
        "|---|---:|---|",
        *[f"| {c} | {counts.get(c + ' passed', 0)} | {counts.get(c + ' failed', 0)} |" for c in cases],
        "",
    ]


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:]))
