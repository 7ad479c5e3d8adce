"""Render every measured figure in README.md and docs/ from the results file that measured it.

    make docs                              # python benchmarks/docs.py: rewrite the tables in place
    python benchmarks/docs.py --check      # exit 1 and show the difference where a page is stale

A page holds a generated table between two markers that name its results file(s) and a view:

    <!-- results docs/bench/peers_digits.json: bench-best -->
    ...what VIEWS["bench-best"] renders from that file...
    <!-- end results -->

Every results file carries `producer` ("path/to/module.py:CONSTANT", the schema its producer writes
now), `schema_version` and `provenance` (command, vaegan commit, date, machine). A file older than
its producer's schema, or without provenance, is refused: re-run the command in its provenance.
Prose quotes a figure only by pointing at the table it is in. Pages under docs/experiments/ are
logs of what was measured at the version they name, and are not rendered.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = re.compile(
    r"(<!-- results (?P<files>[^:>]+): (?P<view>[\w-]+) -->\n)(?P<body>.*?)(<!-- end results -->)", re.S
)
PROVENANCE_KEYS = ("command", "commit", "date", "machine")


class StaleResults(Exception):
    """A results file that cannot back a page: missing provenance, or older than its producer's schema."""


def pages(root: Path = ROOT) -> list[Path]:
    """The user-facing pages: README.md and docs/*.md (not docs/experiments/)."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def producer_schema(producer: str, root: Path = ROOT) -> int:
    """The schema version the producer writes now: `CONSTANT = N` read from its source."""
    path, _, name = producer.partition(":")
    m = re.search(rf"^{re.escape(name)}\s*=\s*(\d+)", (root / path).read_text(), re.M)
    if not m:
        raise StaleResults(f"{producer}: no `{name} = N` in {path}")
    return int(m.group(1))


def load_results(path: Path, root: Path = ROOT) -> dict[str, Any]:
    d = json.loads(path.read_text())
    rel = path.relative_to(root) if path.is_absolute() else path
    missing = [k for k in ("producer", "schema_version", "provenance") if k not in d]
    missing += [f"provenance.{k}" for k in PROVENANCE_KEYS if k not in d.get("provenance", {})]
    if missing:
        raise StaleResults(f"{rel} lacks {', '.join(missing)}: re-run the command that measured it")
    now = producer_schema(d["producer"], root)
    if d["schema_version"] < now:
        raise StaleResults(
            f"{rel} is schema {d['schema_version']}, older than the {now} that {d['producer']} writes: "
            f"re-run `{d['provenance']['command']}`"
        )
    return d


def source_line(*ds: dict[str, Any]) -> str:
    """One line per results file: the command, commit, date and machine that produced it."""
    out = []
    for d in ds:
        p = d["provenance"]
        m = p["machine"]
        gpu = f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU"
        out.append(
            f"<sub>Measured by `{p['command']}` at vaegan {p['commit']}, {p['date']}, on {m.get('cpu', '?')} "
            f"({m.get('isa', '?')}), {m.get('cores', '?')} cores{gpu}.</sub>"
        )
    return "\n".join(out)


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or v == "n/a" or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# --- views: each renders Markdown from one or more results files --------------------------------


def bench_best(*ds: dict[str, Any]) -> str:
    """Per model and batch: vaegan's best row within quality tolerance against the best peer row."""
    lines = [
        "| model | batch | vaegan's best | ms | best peer | ms | vaegan / peer speed |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for d in ds:
        m = d["model"]
        name = f"{d['artifact_dir'].rstrip('/').split('/')[-1]} {m['image_size']}x{m['image_size']}x{m['channels']}"
        mflop = d["flops_per_image"].get("decoder", 0) / 1e6
        for b in d["best"]:
            lines.append(
                f"| {name} ({mflop:.0f} MFLOP/image) | {b['batch']} | {b['vaegan']} | {b['vaegan_ms']:.3f} | "
                f"{b['peer']} | {b['peer_ms']:.3f} | {b['ratio']:.2f}x |"
            )
    return "\n".join(lines) + "\n\n" + source_line(*ds)


def bench_ratios(*ds: dict[str, Any]) -> str:
    """The ratios docs/benchmarks.md sets targets for, per model, from the same runs."""
    targets = {
        "best_vaegan_vs_best_peer_b1": ">= 1x",
        "best_vaegan_vs_best_peer_b64": ">= 1x",
        "vaegan_ort_fp32_overhead_vs_ort_raw_fp32_b64": "< 5%",
        "best_vaegan_int8_vs_best_vaegan_fp32_b64": ">= 2x",
        "best_vaegan_fp32_peak_fraction_b64": "> 60%",
        "best_vaegan_fp16_peak_fraction_b64": "> 60%",
        "best_vaegan_int8_peak_fraction_b64": "> 60%",
        "int8_vs_fp32_peak": "(the CPU's int8 ceiling)",
    }
    names = [d["artifact_dir"].rstrip("/").split("/")[-1] for d in ds]
    lines = ["| ratio | target | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(ds)]
    for k, target in targets.items():
        cells = []
        for d in ds:
            v = d["ratios"].get(k)
            pct = "overhead" in k or "fraction" in k
            cells.append("-" if v is None else f"{100 * v:.1f}%" if pct else f"{v:.2f}x")
        lines.append(f"| `{k}` | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def quality_modes(d: dict[str, Any]) -> str:
    """docs/quality.md's main table: every metric per mode, mean ± sd over seeds, best in bold."""
    cfg, res = d["config"], d["metrics"]
    cols, lower = cfg["columns"], set(cfg["lower_is_better"])

    def vals(mode: str, k: str) -> list[float]:
        return [r[k] for r in res[mode] if k in r]

    best = {}
    for k in cols:
        means = {m: np.mean(vals(m, k)) for m in res if len(vals(m, k)) == len(res[m])}
        best[k] = (min if k in lower else max)(means, key=means.get)
    lines = ["| mode | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for mode in res:
        cells = []
        for k in cols:
            v = vals(mode, k)
            cell = f"{np.mean(v):.3f} ± {np.std(v):.3f}" if v else "n/a"
            cells.append(f"**{cell}**" if best[k] == mode else cell)
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + f"\n\n{len(cfg['seeds'])} seeds, {cfg['epochs']} epochs each, n={cfg['n']} prior samples per run, "
        f"{cfg['train_minutes']:.0f} min of single-thread training and evaluation in all.\n\n"
        + source_line(d)
    )


def _means(d: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        m: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if all(k in r for r in rs)}
        for m, rs in d["metrics"].items()
    }


def quality_checks(d: dict[str, Any]) -> str:
    m = _means(d)
    checks = [
        ("VAE-GAN has a lower FD than VAE", m["vaegan"]["fd"] < m["vae"]["fd"]),
        ("VAE-GAN has a higher precision than VAE", m["vaegan"]["precision"] > m["vae"]["precision"]),
        ("VAE-GAN has a higher coverage than GAN", m["vaegan"]["coverage"] > m["gan"]["coverage"]),
        ("VAE-GAN has a lower class KL than GAN", m["vaegan"]["class_kl"] < m["gan"]["class_kl"]),
    ]
    return "\n".join(f"- {'yes' if ok else 'NO'}: {text}" for text, ok in checks)


def matched_recall(sweeps: dict[str, list[list[dict]]]) -> list[dict]:
    """Per seed: the VAE-GAN point of the temperature sweep whose recall is nearest the VAE's at T=1."""
    picked = []
    for vae, vaegan in zip(sweeps["vae"], sweeps["vaegan"], strict=True):
        target = vae[0]["recall"]  # the sweep starts at temperature 1
        picked.append(min(vaegan, key=lambda p: abs(p["recall"] - target)))
    return picked


def quality_equal_recall(d: dict[str, Any]) -> str:
    """VAE-GAN at the swept temperature whose recall is nearest the VAE's, per seed."""
    sweeps, cols = d["sweeps"], d["config"]["sweep_columns"]
    picked, vae_t1 = matched_recall(sweeps), [r[0] for r in sweeps["vae"]]

    def mean_sd(points: list[dict], k: str) -> str:
        v = [pt[k] for pt in points]
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    def mean(points: list[dict], k: str) -> float:
        return float(np.mean([pt[k] for pt in points]))

    gap = mean(picked, "precision") - mean(vae_t1, "precision")
    spread = max(np.std([pt["precision"] for pt in picked]), np.std([pt["precision"] for pt in vae_t1]))
    lines = [
        "Temperatures swept: " + ", ".join(f"{t:g}" for t in d["config"]["temperatures"]) + ".",
        "",
        "| | temperature | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
        "| vae | 1 | " + " | ".join(mean_sd(vae_t1, k) for k in cols) + " |",
        "| vaegan | "
        + ", ".join(f"{pt['temperature']:g}" for pt in picked)
        + " | "
        + " | ".join(mean_sd(picked, k) for k in cols)
        + " |",
        "",
        f"- {'yes' if gap > 0 else 'NO'}: at the VAE's recall, VAE-GAN has a higher precision than VAE "
        f"(margin {gap:+.3f}; spread between seeds ±{spread:.3f})",
        f"- {'yes' if mean(picked, 'fd') < mean(vae_t1, 'fd') else 'NO'}: at the VAE's recall, VAE-GAN has a "
        "lower FD than VAE",
    ]
    if mean(picked, "recall") > mean(vae_t1, "recall"):
        lines.append(
            "- VAE-GAN's nearest point still has the higher recall: it is ahead on precision and recall at once"
        )
    return "\n".join(lines)


COLOUR_COLUMNS = ("confident", "class_coverage", "class_kl", "fd", "precision", "recall", "sharpness", "psnr")


def colour_modes(d: dict[str, Any]) -> str:
    """Colour data: each mode's prior samples, as `vaegan sample` draws them, scored."""
    cols = [c for c in COLOUR_COLUMNS if any(c in r["metrics"] for r in d["rows"].values())]
    lines = [
        "| samples | " + " | ".join(cols) + " | copy ratio | img/s | steps | missing classes |",
        "|---|" + "---|" * (len(cols) + 4),
    ]
    for key, r in d["rows"].items():
        cells = [fmt(r["metrics"].get(c, "n/a")) for c in cols]
        missing = ", ".join(r["missing_classes"]) or "none"
        lines.append(
            f"| {key} | " + " | ".join(cells) + f" | {r['copy_ratio']:.2f} | {fmt(r.get('img_per_s'), 0)} | "
            f"{r['steps']} | {missing} |"
        )
    return "\n".join(lines) + "\n\n" + source_line(d)


def colour_scale(d: dict[str, Any]) -> str:
    """What good looks like in the same space: held-out real images, and degraded copies of them."""
    cols = [
        c
        for c in ("confident", "fd", "precision", "coverage", "sharpness")
        if c in next(iter(d["scale"].values()))
    ]
    lines = ["| images | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, s in d["scale"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(s.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def colour_targets(d: dict[str, Any]) -> str:
    """The bar a 15-minute run is held to (issue-level targets), each against this file's figures."""
    real = d["scale"]["held-out real images"]
    rows = d["rows"]
    g, v = rows.get("vaegan"), rows.get("vae")
    if g is None:
        return "(no vaegan row)"
    gm = g["metrics"]
    checks = [
        (
            f"confident share at least 0.9x real's ({gm['confident']:.3f} vs {0.9 * real['confident']:.3f})",
            gm["confident"] >= 0.9 * real["confident"],
        ),
        (
            f"every class present (missing: {', '.join(g['missing_classes']) or 'none'}; class coverage "
            f"{gm['class_coverage']:.2f}, held-out real images {real['class_coverage']:.2f})",
            not g["missing_classes"],
        ),
        (
            f"class KL at most 0.1 ({gm['class_kl']:.3f}; held-out real images {real['class_kl']:.3f})",
            gm["class_kl"] <= 0.1,
        ),
        (
            f"precision at least 0.8x real's ({gm['precision']:.3f} vs {0.8 * real['precision']:.3f})",
            gm["precision"] >= 0.8 * real["precision"],
        ),
    ]
    if "sharpness" in gm:
        checks.append(
            (f"sharpness 0.85-1.15x real ({gm['sharpness']:.2f}x)", 0.85 <= gm["sharpness"] <= 1.15)
        )
    if v is not None:
        checks.append(
            (
                "VAE-GAN ahead of VAE on FD, confident share, precision and sharpness, both at temperature 1",
                not behind(gm, v["metrics"]),
            )
        )
        if "sweep" in g:
            point = matched_recall({"vae": [[v["metrics"]]], "vaegan": [g["sweep"]]})[0]
            checks.append(
                (
                    f"the same at the VAE's recall (VAE-GAN at temperature {point['temperature']:g}, recall "
                    f"{point['recall']:.3f} vs {v['metrics']['recall']:.3f}; the digits' criterion above)",
                    not behind(point, v["metrics"]),
                )
            )
    return "\n".join(f"- {'yes' if ok else 'NO'}: {text}" for text, ok in checks)


def behind(g: dict[str, float], v: dict[str, float]) -> list[str]:
    """The measures on which VAE-GAN's figures g are not ahead of VAE's v (sharpness: nearer 1x real)."""
    out = ["fd"] if g["fd"] >= v["fd"] else []
    out += [k for k in ("confident", "precision") if g[k] <= v[k]]
    if "sharpness" in g and "sharpness" in v and abs(g["sharpness"] - 1) >= abs(v["sharpness"] - 1):
        out.append("sharpness")
    return out


EQUAL_RECALL_COLUMNS = ("temperature", "confident", "fd", "precision", "recall", "sharpness")


def colour_equal_recall(d: dict[str, Any]) -> str:
    """Each VAE-GAN run with a VAE run of its seed (rows vaegan<suffix> and vae<suffix>): VAE at
    temperature 1 against VAE-GAN at the swept temperature whose recall is nearest the VAE's."""
    rows = d["rows"]
    pairs = [
        (k, "vae" + k.removeprefix("vaegan"))
        for k, r in rows.items()
        if k.startswith("vaegan") and "sweep" in r
    ]
    pairs = [(g, v) for g, v in pairs if v in rows]
    if not pairs:
        return "(no vaegan row with a temperature sweep and a vae row of its seed)"
    temps = sorted({pt["temperature"] for g, _ in pairs for pt in rows[g]["sweep"]}, reverse=True)
    lines = [
        "Temperatures swept: " + ", ".join(f"{t:g}" for t in temps) + ".",
        "",
        "| samples | " + " | ".join(EQUAL_RECALL_COLUMNS) + " |",
        "|---|" + "---|" * len(EQUAL_RECALL_COLUMNS),
    ]
    verdicts = []
    for g, v in pairs:
        vae = rows[v]["metrics"] | {"temperature": 1.0}
        point = matched_recall({"vae": [[vae]], "vaegan": [rows[g]["sweep"]]})[0]
        for key, m in ((v, vae), (g, point)):
            cells = [f"{m['temperature']:g}"] + [fmt(m.get(c)) for c in EQUAL_RECALL_COLUMNS[1:]]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lost = behind(point, vae)
        verdicts.append(
            f"- {'yes' if not lost else 'NO'}: {g} at the recall of {v} is ahead on FD, confident share, "
            "precision and sharpness" + (f" (not on {', '.join(lost)})" if lost else "")
        )
    return "\n".join([*lines, "", *verdicts, "", source_line(d)])


def quality_kinds(*ds: dict[str, Any]) -> str:
    """docs/your_images.md's summary: per kind of data, what the budget bought, samples against real."""
    lines = [
        "| data | budget | steps | img/s | confident: samples / real | FD: samples / real | sharpness | missing classes |",
        "|---|---|---:|---:|---|---|---:|---|",
    ]
    for d in ds:
        g, real = d["rows"]["vaegan"], d["scale"]["held-out real images"]
        gm = g["metrics"]
        lines.append(
            f"| {Path(d['data']).name} | {d['budget']} | {g['steps']} | {g['img_per_s']:.0f} | "
            f"{gm['confident']:.2f} / {real['confident']:.2f} | {gm['fd']:.1f} / {real['fd']:.1f} | "
            f"{fmt(gm.get('sharpness'), 2)} | {', '.join(g['missing_classes']) or 'none'} |"
        )
    return "\n".join(lines) + "\n\n" + source_line(*ds)


def reliability_page(d: dict[str, Any]) -> str:
    from benchmarks.reliability_report import page_lines

    return "\n".join(page_lines(d["counts"])) + "\n\n" + source_line(d)


def serve_table(*ds: dict[str, Any]) -> str:
    from benchmarks.serve_bench import table

    return "\n\n".join(table(d) + "\n\n" + source_line(d) for d in ds)


def serve_ratios(*ds: dict[str, Any]) -> str:
    from benchmarks.serve_bench import ratio_lines

    return "\n".join(ratio_lines(*ds))


def serve_cold(*ds: dict[str, Any]) -> str:
    from benchmarks.serve_bench import cold_table

    return cold_table(*ds)


VIEWS: dict[str, Callable[..., str]] = {
    "bench-best": bench_best,
    "bench-ratios": bench_ratios,
    "quality-modes": quality_modes,
    "quality-checks": quality_checks,
    "quality-equal-recall": quality_equal_recall,
    "colour-modes": colour_modes,
    "colour-scale": colour_scale,
    "colour-targets": colour_targets,
    "colour-equal-recall": colour_equal_recall,
    "quality-kinds": quality_kinds,
    "reliability": reliability_page,
    "serve-table": serve_table,
    "serve-ratios": serve_ratios,
    "serve-cold": serve_cold,
}


# --- rendering and checking -----------------------------------------------------------------------


def render(text: str, root: Path = ROOT) -> str:
    """The page with every results block re-rendered from its file(s)."""

    def one(m: re.Match) -> str:
        view = m.group("view")
        if view not in VIEWS:
            raise StaleResults(f"unknown view {view!r} (known: {', '.join(VIEWS)})")
        files = [root / f for f in m.group("files").split()]
        body = VIEWS[view](*(load_results(f, root) for f in files)).rstrip("\n")
        return f"{m.group(1)}{body}\n{m.group(5)}"

    return BLOCK.sub(one, text)


def stale(root: Path = ROOT) -> dict[Path, str]:
    """Each page whose committed tables differ from what their files render, with the difference."""
    out = {}
    for page in pages(root):
        text = page.read_text()
        fresh = render(text, root)
        if fresh != text:
            diff = difflib.unified_diff(
                text.splitlines(),
                fresh.splitlines(),
                f"{page.name} (committed)",
                f"{page.name} (rendered)",
                lineterm="",
            )
            out[page] = "\n".join(diff)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--check", action="store_true", help="exit 1 where a page's tables are not what their files render"
    )
    a = ap.parse_args(argv)
    try:
        if a.check:
            bad = stale()
            for page, diff in bad.items():
                print(f"{page.relative_to(ROOT)} is stale (run `make docs`):\n{diff}")
            return 1 if bad else 0
        for page in pages():
            text = page.read_text()
            fresh = render(text)
            if fresh != text:
                page.write_text(fresh)
                print(f"-> {page.relative_to(ROOT)}")
    except StaleResults as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
