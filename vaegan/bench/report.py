"""A bench result as a text table, Markdown (docs/benchmarks.md) and a throughput plot."""

from __future__ import annotations

from pathlib import Path

from vaegan.bench.run import BenchResult, Row
from vaegan.config import ENGINES


def _fraction_cell(r: Row) -> str:
    if r.peak_fraction is not None:
        return f"{100 * r.peak_fraction:.1f} ({r.peak_kind})"
    return "above peak (flagged)" if r.note else "-"


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table (what `vaegan bench` prints)."""
    several = any(r.artifact for r in rows)
    head = ("engine", "prec", "comp", "batch", "median ms", "p90 ms", "p99 ms", "img/s", "GFLOP/s", "% peak")
    lines = [("artifact", *head) if several else head]
    for r in rows:
        frac = _fraction_cell(r)
        lines.append(
            (
                *((r.artifact,) if several else ()),
                r.engine,
                r.precision,
                r.component,
                str(r.batch),
                f"{r.median_ms:.3f}",
                f"{r.p90_ms:.3f}",
                f"{r.p99_ms:.3f}",
                f"{r.images_per_s:.0f}",
                f"{r.gflops:.1f}",
                frac,
            )
        )
    from vaegan.core.text import text_table

    return text_table(lines)


def markdown(result: BenchResult) -> str:
    """The whole result as Markdown: machine, peak, rows, ratios, comparisons, what was skipped."""
    mi = result.machine
    out = [
        f"Machine: {mi['cpu']} ({mi.get('isa', '?')}), {mi['cores']} cores; onnxruntime {mi.get('onnxruntime', '-')}, "
        f"openvino {mi.get('openvino', '-')}, torch {mi.get('torch', '-')}.",
        "Peak (large matmul, best of the trials interleaved with the rows; worst trial in brackets): "
        + ", ".join(f"{k} {v['best']:.0f} ({v['worst']:.0f}) GFLOP/s" for k, v in result.peak_spread.items())
        + ".",
        "",
        "| engine | precision | component | batch | median ms | p90 ms | p99 ms | images/s | GFLOP/s | % of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        frac = _fraction_cell(r)
        out.append(
            f"| {r.engine} | {r.precision} | {r.component} | {r.batch} | {r.median_ms:.3f} | "
            f"{r.p90_ms:.3f} | {r.p99_ms:.3f} | {r.images_per_s:.0f} | {r.gflops:.1f} | {frac} |"
        )
    if result.best:
        out += [
            "",
            "| batch | vaegan's best (within quality tolerance) | ms | best peer (any precision) | ms | ratio |",
            "|---:|---|---:|---|---:|---:|",
        ]
        out += [
            f"| {b['batch']} | {b['vaegan']} | {b['vaegan_ms']:.3f} | {b['peer']} | {b['peer_ms']:.3f} | "
            f"{b['ratio']:.3f}x |"
            for b in result.best
        ]
    if result.ratios:
        out += ["", "| ratio (this run) | value |", "|---|---:|"]
        out += [f"| {k} | {v:.3f} |" for k, v in result.ratios.items()]
    if result.comparisons:
        out += [
            "",
            "| artifact dir | against | engine | precision | component | batch | speedup |",
            "|---|---|---|---|---|---:|---:|",
        ]
        out += [
            f"| {c['artifact']} | {c['against']} | {c['engine']} | {c['precision']} | {c['component']} | "
            f"{c['batch']} | {c['speedup']:.3f}x |"
            for c in result.comparisons
        ]
    if result.skipped:
        out += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in result.skipped.items())]
    return "\n".join(out) + "\n"


def plot(result: BenchResult, path: Path) -> None:
    """Images/s against batch per engine and precision, one panel per component, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({r.component for r in result.rows})
    fig, axes = plt.subplots(1, len(comps), figsize=(7 * len(comps), 4.5), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for r in result.rows:
            if r.component == comp:
                key = (r.artifact, r.engine, r.precision)
                series.setdefault(key, []).append((r.batch, r.images_per_s))
        # colour says the engine, line style the precision
        colours = {e: f"C{i}" for i, e in enumerate(ENGINES)}
        styles = {"fp32": "-", "fp16": "--", "int8": ":"}
        markers = {a: m for a, m in zip(sorted({k[0] for k in series}), "os^Dv", strict=False)}
        for (artifact, engine, precision), pts in sorted(series.items()):
            pts.sort()
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=markers.get(artifact, "o"),  # several artifact dirs: the marker says which
                color=colours.get(engine),
                linestyle=styles.get(precision, "-"),
                label=" ".join(x for x in (artifact, engine, precision) if x),
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("images / s (median latency)")
        ax.set_title(f"{comp}: throughput by engine ({result.machine['cores']} cores)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from vaegan.core.io import atomic_write

    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
