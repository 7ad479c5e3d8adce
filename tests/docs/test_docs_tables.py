"""Every measured figure in README.md and docs/ is rendered from a committed results file
(benchmarks/docs.py): the committed pages are what their files render, an edited figure is caught,
and a results file older than its producer's schema, or without provenance, is refused."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import docs
from tests.conftest import ROOT

# a figure with a unit, in prose: it must sit in a rendered table instead
FIGURE = re.compile(
    r"\b\d+(\.\d+)?\s?(ms|us|img/s|images/s|req/s|GFLOP/s|GOP/s|MFLOP|dB)\b|\b\d+\.\d+x\b"
    r"|\b0\.\d{2,}\b|\bFD \d"
)


def _copy_tree(tmp: Path) -> Path:
    """README, docs/ and the producers whose schema constants the results name, under tmp."""
    shutil.copy(ROOT / "README.md", tmp / "README.md")
    shutil.copytree(ROOT / "docs", tmp / "docs")
    for producer in {json.loads(p.read_text())["producer"].split(":")[0] for p in _results_files(ROOT)}:
        (tmp / producer).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / producer, tmp / producer)
    return tmp


def _results_files(root: Path) -> list[Path]:
    return sorted((root / "docs" / "results").glob("*.json")) + sorted(
        (root / "docs" / "bench").glob("*.json")
    )


def _blocks(text: str) -> list[re.Match]:
    return list(docs.BLOCK.finditer(text))


def test_committed_pages_are_what_their_results_render():
    stale = docs.stale()
    assert not stale, "run `make docs`:\n" + "\n".join(stale.values())


def test_every_results_file_backs_a_table_and_says_where_it_came_from():
    used = {f for page in docs.pages() for m in _blocks(page.read_text()) for f in m.group("files").split()}
    for path in _results_files(ROOT):
        rel = str(path.relative_to(ROOT))
        assert rel in used, f"{rel} is rendered nowhere: link it from a page or remove it"
        d = docs.load_results(path)  # raises when it lacks provenance or is older than its producer
        assert d["provenance"]["machine"].get("isa"), f"{rel}: the machine's ISA is missing"


def test_an_edited_figure_fails_the_check(tmp_path):
    root = _copy_tree(tmp_path)
    page = root / "docs" / "quality.md"
    text = page.read_text()
    block = _blocks(text)[0]
    body = block.group("body")
    m = re.search(r"\d+\.\d{3}", body)
    assert m, "the first quality table has a figure"
    edited = body[: m.start()] + ("9" if m.group()[0] != "9" else "8") + body[m.start() + 1 :]
    page.write_text(text[: block.start("body")] + edited + text[block.end("body") :])
    stale = docs.stale(root)
    assert list(stale) == [page]
    assert "-" + edited.splitlines()[body[: m.start()].count("\n")] in stale[page]
    assert docs.main.__module__  # the CLI path too:
    docs.render(page.read_text(), root)  # renders without error: the file is the truth


def test_a_results_file_older_than_its_producer_is_refused(tmp_path):
    root = _copy_tree(tmp_path)
    path = root / "docs" / "results" / "quality_digits.json"
    d = json.loads(path.read_text())
    d["schema_version"] = docs.producer_schema(d["producer"], root) - 1
    path.write_text(json.dumps(d))
    with pytest.raises(docs.StaleResults, match="older than"):
        docs.stale(root)
    del d["provenance"]
    d["schema_version"] += 1
    path.write_text(json.dumps(d))
    with pytest.raises(docs.StaleResults, match="provenance"):
        docs.stale(root)


def test_prose_quotes_figures_only_from_tables():
    """Outside rendered blocks and code, a user-facing page states no measured figure with a unit."""
    found = []
    for page in docs.pages():
        text = docs.BLOCK.sub("", page.read_text())
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)
        found += [f"{page.name}: {m.group()!r}" for m in FIGURE.finditer(text)]
    assert not found, "put these figures in a results file and render them: " + ", ".join(found)


def test_every_relative_link_and_picture_in_the_docs_exists():
    broken = []
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for m in re.finditer(r"\]\(([^)#\s]+)(#[^)]*)?\)", page.read_text()):
            target = m.group(1)
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def _colour_results(matched_precision: float) -> dict:
    """A colour results file: a VAE row and a VAE-GAN row of the same seed with a temperature sweep,
    VAE-GAN behind on precision at temperature 1 and, at 0.7 (recall nearest the VAE's), at
    matched_precision."""

    def point(t: float, precision: float, recall: float) -> dict:
        return {"temperature": t, "confident": 0.8, "fd": 50.0, "precision": precision, "recall": recall}

    vaegan = {"confident": 0.8, "fd": 50.0, "precision": 0.80, "recall": 0.80, "sharpness": 1.02}
    sweep = [point(1.0, 0.80, 0.80), point(0.85, 0.82, 0.76), point(0.7, matched_precision, 0.70)]
    return {
        "provenance": {"command": "c", "commit": "x", "date": "d", "machine": {"isa": "avx2"}},
        "scale": {
            "held-out real images": {
                "confident": 0.86,
                "precision": 0.98,
                "class_coverage": 1.0,
                "class_kl": 0.02,
            }
        },
        "rows": {
            "vae": {
                "metrics": {
                    "confident": 0.63,
                    "fd": 149.0,
                    "precision": 0.827,
                    "recall": 0.69,
                    "sharpness": 0.71,
                },
                "missing_classes": [],
            },
            "vaegan": {
                "metrics": vaegan | {"class_coverage": 1.0, "class_kl": 0.03},
                "missing_classes": [],
                "sweep": [pt | {"sharpness": 1.0} for pt in sweep],
            },
        },
    }


def test_a_colour_vaegan_run_is_held_against_its_vae_at_equal_recall():
    ahead, behind = _colour_results(0.835), _colour_results(0.81)
    table = docs.colour_equal_recall(ahead)
    assert "| vae | 1 | 0.630 | 149.000 | 0.827 | 0.690 | 0.710 |" in table
    assert "| vaegan | 0.7 | 0.800 | 50.000 | 0.835 | 0.700 | 1.000 |" in table  # recall nearest 0.69
    assert "- yes: vaegan at the recall of vae is ahead" in table
    assert (
        "- NO: vaegan at the recall of vae is ahead on FD, confident share, precision and sharpness (not on precision)"
        in docs.colour_equal_recall(behind)
    )
    targets = docs.colour_targets(ahead)
    assert (
        "- NO: VAE-GAN ahead of VAE on FD, confident share, precision and sharpness, both at temperature 1"
        in targets
    )
    assert "- yes: the same at the VAE's recall (VAE-GAN at temperature 0.7, recall 0.700 vs 0.690" in targets
    assert "- NO: the same at the VAE's recall" in docs.colour_targets(behind)
