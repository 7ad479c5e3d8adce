"""`vaegan bench`: latency and throughput of the exported model on every engine, in one run.

Rows: engine x precision x component x batch. Engines are the vaegan runtime on each backend and
the peers people would otherwise use on the same ONNX: a raw ONNX Runtime session with default
options, OpenVINO with its default CPU config, and PyTorch eager on the trained model (when torch
and the run dir are here). Achieved GFLOP/s is reported as a fraction of this machine's peak,
measured in the same run with large matmuls (fp32 with numpy; bf16 with torch when installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.export.manifest import Manifest, verify

BENCH_SCHEMA = 1
ENGINES = ("vaegan-ort", "vaegan-openvino", "ort-raw", "openvino-default", "torch-eager")


@dataclass
class BenchConfig:
    engines: list[str] = field(default_factory=lambda: list(ENGINES))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    components: list[str] = field(default_factory=lambda: ["decoder"])
    batches: list[int] = field(default_factory=lambda: [1, 8, 64])
    warmup: int = 10
    iters: int = 0  # 0: run for `seconds`
    seconds: float = 2.0
    threads: int = 0  # 0: all cores
    peak: bool = True


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


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def time_fn(fn: Callable[[], Any], warmup: int, iters: int, seconds: float) -> list[float]:
    """Wall-clock latency of each call in ms, after warm-up; iters calls, or as many as fit in seconds."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    t_end = time.perf_counter() + seconds
    while (iters and len(out) < iters) or (not iters and (time.perf_counter() < t_end or len(out) < 5)):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def model_flops(onnx_path: Path) -> float:
    """FLOPs per image of a graph (2 x MACs of Conv/Gemm/MatMul), from ONNX shape inference at batch 1."""
    import onnx
    from onnx import shape_inference

    m = onnx.load(str(onnx_path))
    for vi in list(m.graph.input):
        d = vi.type.tensor_type.shape.dim
        if d and not d[0].HasField("dim_value"):
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    flops = 0.0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w, y = shapes.get(n.input[1]), shapes.get(n.output[0])
            if w and y:
                flops += 2.0 * float(np.prod(y[1:])) * float(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(n.input[0]), shapes.get(n.output[0])
            if a and y:
                flops += 2.0 * float(np.prod(y)) * a[-1]
    return flops


def measure_peak(seconds: float = 1.0, n: int = 2048) -> dict[str, float]:
    """GFLOP/s of a large matmul: fp32 (numpy's BLAS), bf16 (torch, AMX/AVX512-bf16 where present)."""
    peak = {}
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    lat = time_fn(lambda: a @ a, 2, 0, seconds)
    peak["fp32"] = 2 * n**3 / (float(np.median(lat)) / 1e3) / 1e9
    if importlib.util.find_spec("torch") is not None:
        import torch

        t = torch.from_numpy(a).to(torch.bfloat16)
        lat = time_fn(lambda: t @ t, 2, 0, seconds)
        peak["bf16"] = 2 * n**3 / (float(np.median(lat)) / 1e3) / 1e9
    peak["int8"] = _int8_peak(n, seconds)
    return peak


def _int8_peak(n: int, seconds: float) -> float:
    """GOP/s of ONNX Runtime's MatMulInteger (u8 x s8 -> s32), the kernel int8 QDQ convs lower to."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        "mm",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [n, n]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.integers(0, 255, (n, n), dtype=np.uint8),
        "b": rng.integers(-127, 127, (n, n), dtype=np.int8),
    }
    lat = time_fn(lambda: sess.run(None, feeds), 2, 0, seconds)
    return 2 * n**3 / (float(np.median(lat)) / 1e3) / 1e9


# ------------------------------------------------------------------------------------- engines
def _make_engine(engine: str, art_dir: Path, m: Manifest, precision: str, component: str, threads: int):
    """A callable taking the input batch, or a string saying why the engine is skipped."""
    fmt = {"vaegan-openvino": "openvino", "openvino-default": "openvino"}.get(engine, "onnx")
    art = m.find(component, precision, fmt)
    if engine == "torch-eager":
        return _torch_engine(m, precision, component, threads)
    if art is None:
        return f"no {precision} {fmt} {component} in the artifact dir"
    path = verify(art_dir, art)
    if engine in ("vaegan-ort", "vaegan-openvino"):
        from vaegan.runtime import Sampler

        s = Sampler.load(
            art_dir,
            backend="ort" if engine == "vaegan-ort" else "openvino",
            precision=precision,
            threads=threads,
            max_n=10**6,
        )
        return s.decode if component == "decoder" else s.encode
    if engine == "ort-raw":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})
    if engine == "openvino-default":
        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed"
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU")  # OpenVINO's own defaults
        req = compiled.create_infer_request()
        return lambda x: req.infer({0: x})
    raise ValueError(engine)


def _torch_engine(m: Manifest, precision: str, component: str, threads: int):
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    if precision != "fp32":
        return "PyTorch eager runs the fp32 model only"
    run = Path(m.run.get("path", ""))
    if not (run / "model.safetensors").exists():
        return f"the run dir {run} is not here (pass --run-dir)"
    import torch

    from vaegan.export.onnx import DecoderGraph, EncoderGraph
    from vaegan.trainer.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    _, model = load_model(run)
    graph = DecoderGraph(model.decoder) if component == "decoder" else EncoderGraph(model.encoder)

    def call(x):
        with torch.inference_mode():
            return graph(torch.from_numpy(x))

    return call


def run_bench(
    art_dir: str | Path, cfg: BenchConfig, run_dir: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    art_dir = Path(art_dir)
    m = Manifest.load(art_dir)
    if run_dir is not None:
        m.run["path"] = str(run_dir)
    peak = measure_peak() if cfg.peak else {}
    flops = {c: model_flops(verify(art_dir, m.find(c, "fp32", "onnx"))) for c in cfg.components}
    rng = np.random.default_rng(0)
    inputs = {
        "decoder": lambda b: rng.standard_normal((b, m.latent_dim), dtype=np.float32),
        "encoder": lambda b: rng.integers(0, 256, (b, *m.image_shape), dtype=np.uint8),
    }
    plan = [(e, p, c) for c in cfg.components for p in cfg.precisions for e in cfg.engines]
    bar = None
    if progress:
        import sys

        from tqdm import tqdm

        bar = tqdm(
            total=len(plan) * len(cfg.batches), unit="case", leave=False, disable=not sys.stderr.isatty()
        )
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for engine, precision, comp in plan:
        fn = _make_engine(engine, art_dir, m, precision, comp, cfg.threads)
        if isinstance(fn, str):
            skipped[f"{engine}/{precision}/{comp}"] = fn
            if bar:
                bar.update(len(cfg.batches))
            continue
        for b in cfg.batches:
            if bar:
                bar.set_description(f"{engine} {precision} {comp} b{b}")
            x = inputs[comp](b)
            lat = time_fn(lambda fn=fn, x=x: fn(x), cfg.warmup, cfg.iters, cfg.seconds)
            med = float(np.median(lat))
            gflops = flops[comp] * b / (med / 1e3) / 1e9
            # the precision the engine computes in: OpenVINO's default runs fp32 IR in bf16 on AMX CPUs
            kind = {"fp32": "fp32", "fp16": "bf16", "int8": "int8"}[precision]
            if engine == "openvino-default" and precision == "fp32":
                kind = "bf16"
            kind = kind if kind in peak else ("fp32" if "fp32" in peak else None)
            rows.append(
                Row(
                    engine=engine,
                    precision=precision,
                    component=comp,
                    batch=b,
                    median_ms=med,
                    p90_ms=percentile(lat, 90),
                    p99_ms=percentile(lat, 99),
                    mean_ms=float(np.mean(lat)),
                    iters=len(lat),
                    images_per_s=b / (med / 1e3),
                    gflops=gflops,
                    peak_fraction=(gflops / peak[kind]) if kind else None,
                    peak_kind=kind,
                )
            )
            if bar:
                bar.update(1)
        if hasattr(fn, "__self__") and hasattr(fn.__self__, "close"):
            fn.__self__.close()
    if bar:
        bar.close()
    return {
        "schema_version": BENCH_SCHEMA,
        "machine": machine_info(),
        "artifact_dir": str(art_dir),
        "model": m.model,
        "config": asdict(cfg),
        "flops_per_image": flops,
        "peak_gflops": peak,
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
        "ratios": ratios(rows),
    }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("onnxruntime", "openvino", "torch", "numpy"):
        if importlib.util.find_spec(mod) is not None:
            info[mod] = __import__(mod).__version__
    return info


def _median(
    rows: list[Row], engine: str, precision: str, batch: int, component: str = "decoder"
) -> float | None:
    for r in rows:
        if (r.engine, r.precision, r.batch, r.component) == (engine, precision, batch, component):
            return r.median_ms
    return None


def ratios(rows: list[Row]) -> dict[str, float]:
    """The comparisons docs/benchmarks.md reports, each from this one run (>1 means the first is faster)."""
    out = {}
    batches = sorted({r.batch for r in rows})
    big = batches[-1] if batches else 0

    def put(name: str, slow: float | None, fast: float | None) -> None:
        if slow and fast:
            out[name] = slow / fast

    for b in batches:
        put(
            f"runtime_overhead_b{b}",
            _median(rows, "vaegan-ort", "fp32", b),
            _median(rows, "ort-raw", "fp32", b),
        )
        put(
            f"ort_vs_torch_b{b}",
            _median(rows, "torch-eager", "fp32", b),
            _median(rows, "vaegan-ort", "fp32", b),
        )
    if big:
        put(
            f"int8_vs_fp32_b{big}",
            _median(rows, "vaegan-ort", "fp32", big),
            _median(rows, "vaegan-ort", "int8", big),
        )
        best = min(
            (
                r.median_ms
                for r in rows
                if r.batch == big and r.engine.startswith("vaegan") and r.component == "decoder"
            ),
            default=None,
        )
        put(f"best_vs_openvino_default_b{big}", _median(rows, "openvino-default", "fp32", big), best)
    # overhead is reported as (runtime / raw) - 1: 0.03 means 3% slower than a raw session
    for k in [k for k in out if k.startswith("runtime_overhead")]:
        out[k] = 1.0 / out[k] - 1.0
    return out


# -------------------------------------------------------------------------------------- output
def table(result: dict[str, Any]) -> str:
    head = ("engine", "prec", "comp", "batch", "median ms", "p90 ms", "p99 ms", "img/s", "GFLOP/s", "% peak")
    lines = [head]
    for r in result["rows"]:
        frac = f"{100 * r['peak_fraction']:.1f} ({r['peak_kind']})" if r["peak_fraction"] is not None else "-"
        lines.append(
            (
                r["engine"],
                r["precision"],
                r["component"],
                str(r["batch"]),
                f"{r['median_ms']:.3f}",
                f"{r['p90_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"{r['images_per_s']:.0f}",
                f"{r['gflops']:.1f}",
                frac,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def markdown(result: dict[str, Any]) -> str:
    mi, peak = result["machine"], result["peak_gflops"]
    out = [
        f"Machine: {mi['cpu']}, {mi['cores']} cores; onnxruntime {mi.get('onnxruntime', '-')}, "
        f"openvino {mi.get('openvino', '-')}, torch {mi.get('torch', '-')}.",
        "Peak (large matmul, same run): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()) + ".",
        "",
        "| engine | precision | component | batch | median ms | p90 ms | p99 ms | images/s | GFLOP/s | % of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        frac = f"{100 * r['peak_fraction']:.1f} ({r['peak_kind']})" if r["peak_fraction"] is not None else "-"
        out.append(
            f"| {r['engine']} | {r['precision']} | {r['component']} | {r['batch']} | {r['median_ms']:.3f} | "
            f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:.0f} | {r['gflops']:.1f} | {frac} |"
        )
    if result["ratios"]:
        out += ["", "| ratio (this run) | value |", "|---|---:|"]
        out += [f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()]
    if result["skipped"]:
        out += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items())]
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = sorted({r["component"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(comps), figsize=(7 * len(comps), 4.5), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in result["rows"]:
            if r["component"] == comp:
                series.setdefault(f"{r['engine']} {r['precision']}", []).append(
                    (r["batch"], r["images_per_s"])
                )
        for name, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("images / s (median latency)")
        ax.set_title(f"{comp}: throughput by engine ({result['machine']['cores']} cores)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from vaegan.io import atomic_write

    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_json(result: dict[str, Any], path: Path) -> None:
    from vaegan.io import write_json as _w

    _w(path, result)


__all__ = ["BenchConfig", "json", "markdown", "plot", "run_bench", "table"]
