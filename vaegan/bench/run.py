"""One bench run: every engine x precision x component x batch in interleaved rounds, the peak
measured between them, and the ratios docs/benchmarks.md reports, all from that one run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.bench.flops import model_flops
from vaegan.bench.measure import machine_info, measure_peak, percentile, provenance, time_fn
from vaegan.bench.peers import make_runner
from vaegan.config import BenchConfig
from vaegan.core.errors import ArtifactMissing, ConfigError
from vaegan.core.manifest import PRECISIONS, Manifest, verify

BENCH_SCHEMA = 3  # 2: ratios named for what they divide, best vaegan vs best peer per batch; 3: provenance


@dataclass
class Row:
    engine: str
    precision: str
    component: str
    batch: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    iters: int
    images_per_s: float
    gflops: float
    peak_fraction: float | None
    peak_kind: str | None
    note: str = ""
    artifact: str = ""  # the artifact dir, when a run compares several


@dataclass
class BenchResult:
    """What one `vaegan bench` run measured; `to_dict()` is its JSON (schema BENCH_SCHEMA)."""

    machine: dict[str, Any]
    artifact_dir: str
    model: dict[str, Any]
    config: dict[str, Any]
    flops_per_image: dict[str, float]
    rows: list[Row]
    peak_spread: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> best, worst, trials
    skipped: dict[str, str] = field(default_factory=dict)  # engine/precision/component -> why
    ratios: dict[str, float] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    best: list[dict[str, Any]] = field(default_factory=list)  # per batch: vaegan's best vs the best peer
    provenance: dict[str, Any] = field(default_factory=dict)  # command, commit, date, machine
    producer: str = "vaegan/bench/run.py:BENCH_SCHEMA"  # where schema_version is defined (benchmarks/docs.py)
    schema_version: int = BENCH_SCHEMA

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        """A result read back from its JSON (to render docs/benchmarks.md's tables from it)."""
        known = {f for f in cls.__dataclass_fields__ if f != "rows"}
        return cls(rows=[Row(**r) for r in d["rows"]], **{k: v for k, v in d.items() if k in known})

    @property
    def peak_gflops(self) -> dict[str, float]:
        return {k: v["best"] for k, v in self.peak_spread.items()}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"peak_gflops": self.peak_gflops}


def run_bench(
    art_dir: str | Path | list[str | Path],
    cfg: BenchConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
    modules: dict[str, Any] | None = None,
) -> BenchResult:
    """Every engine x precision x component x batch of `cfg`, for one artifact dir or several.

    Several dirs (two exports of one model, before and after a change) take their turns in the same
    rounds, so the machine's noise hits them alike, and every row of the others is compared with the
    same row of the first. modules: {"decoder": nn.Module, ...} for the PyTorch eager peer of a model
    exported with export_model; run_dir: the training run for the PyTorch eager peer, when
    it has moved since the export."""
    given = art_dir if isinstance(art_dir, list | tuple) else [art_dir]
    dirs = {str(d): Path(d) for d in given}  # label (the dir as given) -> dir
    labels = list(dirs)
    if len(labels) != len(given):
        raise ConfigError(f"an artifact dir is given twice: {', '.join(map(str, given))}")
    manifests = {label: Manifest.load(d) for label, d in dirs.items()}
    # The peak is measured between the rows too (before each group and at the end), so a slow or
    # fast minute of a noisy machine is seen by the peak as by the rows; the best trial counts.
    peak_runs: list[dict[str, dict[str, float]]] = []
    flops: dict[str, dict[str, float]] = {}
    for label, d in dirs.items():
        for c in cfg.components:
            fp32 = manifests[label].find(c, "fp32", "onnx")
            if fp32 is None:
                raise ArtifactMissing(f"{d} has no fp32 ONNX {c}, which bench counts FLOPs on: re-export it")
            flops.setdefault(label, {})[c] = model_flops(verify(d, fp32))
    rng = np.random.default_rng(0)

    def inputs(m: Manifest, comp: str, b: int) -> np.ndarray:
        if comp == "decoder":
            return rng.standard_normal((b, m.latent_dim), dtype=np.float32)
        return rng.integers(0, 256, (b, *m.image_shape), dtype=np.uint8)

    groups = [(c, p) for c in cfg.components for p in cfg.precisions]
    cases = [(label, engine) for label in labels for engine in cfg.engines]
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(
            total=len(groups) * len(cases) * len(cfg.batches) * cfg.rounds,
            unit="case",
            leave=False,
            disable=not sys.stderr.isatty(),
        )
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for comp, precision in groups:
        if cfg.peak:
            peak_runs.append(measure_peak(seconds=0.6, trials=3))
        runners = {}
        for label, engine in cases:
            made = make_runner(
                engine, dirs[label], manifests[label], precision, comp, cfg.threads, modules, run_dir
            )
            if isinstance(made, str):
                prefix = f"{label}: " if len(labels) > 1 else ""
                skipped[f"{prefix}{engine}/{precision}/{comp}"] = made
                if bar:
                    bar.update(len(cfg.batches) * cfg.rounds)
            else:
                runners[(label, engine)] = made
        for b in cfg.batches:
            x = {label: inputs(manifests[label], comp, b) for label in labels}
            lats: dict[tuple[str, str], list[float]] = {case: [] for case in runners}
            # Engines take turns in rounds, so that a slow minute on a noisy machine hits them all;
            # each turn warms up first, which also lets the previous engine's spinning threads settle.
            for _ in range(cfg.rounds):
                for (label, engine), (runner, _) in runners.items():
                    if bar:
                        bar.set_description(f"{engine} {precision} {comp} b{b}")
                    lats[(label, engine)] += time_fn(
                        functools.partial(runner.run, x[label]),
                        cfg.warmup,
                        -(-cfg.iters // cfg.rounds),
                        cfg.seconds / cfg.rounds,
                    )
                    if bar:
                        bar.update(1)
            for (label, engine), (_, compute) in runners.items():
                row = _row(engine, precision, comp, b, lats[(label, engine)], flops[label][comp], compute)
                row.artifact = label if len(labels) > 1 else ""
                rows.append(row)
        for runner, _ in runners.values():
            runner.close()
    if bar:
        bar.close()
    peak: dict[str, dict[str, float]] = {}
    if cfg.peak:
        peak_runs.append(measure_peak(seconds=0.6, trials=3))
        peak = _merge_peaks(peak_runs)
        if _set_fractions(rows, peak):  # a row beat the peak: measure it again, longer
            peak_runs.append(measure_peak(seconds=3.0, trials=10))
            peak = _merge_peaks(peak_runs)
            _set_fractions(rows, peak)
    first = [r for r in rows if r.artifact in ("", labels[0])]
    tolerable = quality_tolerable(manifests[labels[0]])
    return BenchResult(
        machine=machine_info(),
        artifact_dir=labels[0],
        model=manifests[labels[0]].model,
        config=asdict(cfg),
        flops_per_image=flops[labels[0]],
        rows=rows,
        peak_spread=peak,
        skipped=skipped,
        ratios=ratios(first, tolerable) | int8_headroom(peak),
        comparisons=comparisons(rows, labels),
        best=best_rows(first, tolerable),
        provenance=provenance(),
    )


def comparisons(rows: list[Row], labels: list[str]) -> list[dict[str, Any]]:
    """Each row of a later artifact dir against the same engine, precision, component and batch of
    the first: speedup = the first's median / this one's (above 1: this one is faster)."""
    if len(labels) < 2:
        return []
    base = {(r.engine, r.precision, r.component, r.batch): r for r in rows if r.artifact == labels[0]}
    out = []
    for r in rows:
        ref = base.get((r.engine, r.precision, r.component, r.batch))
        if r.artifact != labels[0] and ref is not None:
            out.append(
                {
                    "artifact": r.artifact,
                    "against": labels[0],
                    "engine": r.engine,
                    "precision": r.precision,
                    "component": r.component,
                    "batch": r.batch,
                    "speedup": ref.median_ms / r.median_ms,
                }
            )
    return out


def int8_headroom(peak: dict[str, dict[str, float]]) -> dict[str, float]:
    """`int8_vs_fp32_peak`: this CPU's int8 matmul peak over its fp32 one, the most an int8 row can
    gain over fp32 here when both run at the same fraction of their peak. It is what decides whether
    int8 pays on a CPU: 3.4x measured on an AVX-512 VNNI EPYC, which multiplies and adds u8 x s8 in
    one instruction (VPDPBUSD), 1.9x on an AVX2-only one, which needs three (VPMADDUBSW, VPMADDWD,
    VPADDD) for the same 32 products (docs/benchmarks.md)."""
    if "int8" in peak and "fp32" in peak and peak["fp32"]["best"] > 0:
        return {"int8_vs_fp32_peak": peak["int8"]["best"] / peak["fp32"]["best"]}
    return {}


def _row(
    engine: str, precision: str, comp: str, batch: int, lat: list[float], flops: float, compute: str
) -> Row:
    med = float(np.median(lat))
    gflops = flops * batch / (med / 1e3) / 1e9
    return Row(
        engine=engine,
        precision=precision,
        component=comp,
        batch=batch,
        median_ms=med,
        p90_ms=percentile(lat, 90),
        p99_ms=percentile(lat, 99),
        mean_ms=float(np.mean(lat)),
        iters=len(lat),
        images_per_s=batch / (med / 1e3),
        gflops=gflops,
        peak_fraction=None,
        peak_kind=compute,
    )


def _merge_peaks(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        for kind, p in run.items():
            o = out.setdefault(kind, {"best": 0.0, "worst": float("inf"), "trials": 0.0})
            o["best"], o["worst"] = max(o["best"], p["best"]), min(o["worst"], p["worst"])
            o["trials"] += p["trials"]
    return out


def _set_fractions(rows: list[Row], peak: dict[str, dict[str, float]]) -> bool:
    """Each row's fraction of the peak of the type it computes in; True if a row is above 100%.

    Such a row is never reported as a fraction: it says the matmul used as the peak is not the
    engine's fastest kernel (OpenVINO's int8 convs against ONNX Runtime's MatMulInteger, say)."""
    above = False
    for r in rows:
        kind = r.peak_kind if r.peak_kind in peak else ("fp32" if "fp32" in peak else None)
        r.peak_kind = kind
        r.peak_fraction, r.note = None, ""
        if kind is None:
            continue
        frac = r.gflops / peak[kind]["best"]
        if frac > 1.0:
            above = True
            r.note = f"above the measured {kind} peak ({peak[kind]['best']:.0f} GFLOP/s): not a fraction"
        else:
            r.peak_fraction = frac
    return above


def _median(
    rows: list[Row], engine: str, precision: str, batch: int, component: str = "decoder"
) -> float | None:
    for r in rows:
        if (r.engine, r.precision, r.batch, r.component) == (engine, precision, batch, component):
            return r.median_ms
    return None


def ratios(rows: list[Row], tolerable: Callable[[Row], bool] = lambda r: True) -> dict[str, float]:
    """The comparisons docs/benchmarks.md reports, each from this one run, on the decoder.

    Every name says what it divides: `A_vs_B` is B's median latency over A's (above 1: A is
    faster); `*_overhead_vs_*` is (A / B) - 1 (0.03: A is 3% slower). tolerable(row): whether a
    vaegan row's precision is within the export's quality tolerance (the manifest's quality table);
    only those rows count as vaegan's best.
    """
    out: dict[str, float] = {}
    dec = [r for r in rows if r.component == "decoder"]
    batches = sorted({r.batch for r in dec})

    def put(name: str, slow: float | None, fast: float | None) -> None:
        if slow and fast:
            out[name] = slow / fast

    for b in batches:
        for p in PRECISIONS:
            # each vaegan runner against the raw engine on the same file
            vo, raw = _median(dec, "vaegan-ort", p, b), _median(dec, "ort-raw", p, b)
            if vo and raw:
                out[f"vaegan_ort_{p}_overhead_vs_ort_raw_{p}_b{b}"] = vo / raw - 1.0
            put(
                f"vaegan_openvino_{p}_vs_openvino_default_{p}_b{b}",
                _median(dec, "openvino-default", p, b),
                _median(dec, "vaegan-openvino", p, b),
            )
        put(
            f"vaegan_ort_fp32_vs_torch_eager_fp32_b{b}",
            _median(dec, "torch-eager", "fp32", b),
            _median(dec, "vaegan-ort", "fp32", b),
        )
    for pair in best_rows(rows, tolerable):
        out[f"best_vaegan_vs_best_peer_b{pair['batch']}"] = pair["ratio"]
    if not batches:
        return out
    big = batches[-1]
    for backend in ("ort", "openvino"):
        put(
            f"vaegan_{backend}_int8_vs_vaegan_{backend}_fp32_b{big}",
            _median(dec, f"vaegan-{backend}", "fp32", big),
            _median(dec, f"vaegan-{backend}", "int8", big),
        )
    fastest = {
        p: _fastest(r for r in dec if r.batch == big and r.engine.startswith("vaegan-") and r.precision == p)
        for p in PRECISIONS
    }
    if fastest["fp32"] and fastest["int8"]:
        put(
            f"best_vaegan_int8_vs_best_vaegan_fp32_b{big}",
            fastest["fp32"].median_ms,
            fastest["int8"].median_ms,
        )
    if fastest["fp32"] and fastest["fp16"]:
        put(
            f"best_vaegan_fp16_vs_best_vaegan_fp32_b{big}",
            fastest["fp32"].median_ms,
            fastest["fp16"].median_ms,
        )
    for p, r in fastest.items():
        if r and r.peak_fraction is not None:
            out[f"best_vaegan_{p}_peak_fraction_b{big}"] = r.peak_fraction
    return out


def best_rows(rows: list[Row], tolerable: Callable[[Row], bool] = lambda r: True) -> list[dict[str, Any]]:
    """Per batch: vaegan's fastest decoder row within the quality tolerance and the fastest peer row
    at any precision, what `best_vaegan_vs_best_peer_b*` divides, named so a reader can check it."""
    out = []
    for b in sorted({r.batch for r in rows if r.component == "decoder"}):
        dec = [r for r in rows if r.component == "decoder" and r.batch == b]
        best = _fastest(r for r in dec if r.engine.startswith("vaegan-") and tolerable(r))
        peer = _fastest(r for r in dec if not r.engine.startswith("vaegan-"))
        if best and peer:
            out.append(
                {
                    "batch": b,
                    "vaegan": f"{best.engine} {best.precision}",
                    "vaegan_ms": best.median_ms,
                    "peer": f"{peer.engine} {peer.precision}",
                    "peer_ms": peer.median_ms,
                    "ratio": peer.median_ms / best.median_ms,
                }
            )
    return out


def _fastest(rows: Iterable[Row]) -> Row | None:
    return min(rows, key=lambda r: r.median_ms, default=None)


def quality_tolerable(m: Manifest) -> Callable[[Row], bool]:
    """Whether a vaegan row's precision is within the export's quality tolerance: the manifest's
    quality row for that engine's files (OpenVINO's IR has its own) says within_tolerance, or has no
    verdict (fp32, the reference; an export without data to score)."""

    def ok(r: Row) -> bool:
        q = m.quality.get(f"openvino-{r.precision}") if r.engine == "vaegan-openvino" else None
        q = q or m.quality.get(r.precision, {})
        return q.get("within_tolerance") is not False

    return ok
