"""`vaegan bench`: latency and throughput of the exported model on every engine, in one run.

Rows: engine x precision x component x batch. Engines are the vaegan runtime on each backend and
the peers people would otherwise use on the same ONNX: a raw ONNX Runtime session with default
options, OpenVINO with its default CPU config, and PyTorch eager on the trained model (when torch
and the run dir are here). Achieved GFLOP/s is reported as a fraction of this machine's peak,
measured in the same run with large matmuls (fp32 with numpy; bf16 with torch when installed).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.config import ENGINE_FORMATS, ENGINES, BenchConfig
from vaegan.core.errors import ArtifactCorrupt, ArtifactMissing, BackendUnavailable, ConfigError
from vaegan.core.manifest import Artifact, Manifest, verify
from vaegan.runtime.backends import Runner, RunnerInfo

BENCH_SCHEMA = 1


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


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def time_fn(
    fn: Callable[[], Any], warmup: int, iters: int, seconds: float, min_calls: int = 5
) -> list[float]:
    """Wall-clock latency of each call in ms, after warm-up; iters calls, or as many as fit in seconds
    (at least min_calls)."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    t_end = time.perf_counter() + seconds
    while (iters and len(out) < iters) or (
        not iters and (time.perf_counter() < t_end or len(out) < min_calls)
    ):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def model_flops(onnx_path: Path) -> float:
    """FLOPs per image of a graph (2 x MACs of Conv, ConvTranspose, Gemm, MatMul), from ONNX shape
    inference at batch 1.

    A conv counts the products of its non-zero weights: the decoder's rewritten output conv
    (vaegan/export/rewrite.py) carries zeros that do no useful work, and counting them would make
    the model look bigger and the engines look closer to peak than they are."""
    import onnx
    from onnx import numpy_helper, shape_inference

    try:
        m = onnx.load(str(onnx_path))
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError: a truncated or damaged file
        raise ArtifactCorrupt(f"{onnx_path.name} is not a readable ONNX model ({type(e).__name__})") from None
    for vi in list(m.graph.input):
        d = vi.type.tensor_type.shape.dim
        if d and not d[0].HasField("dim_value"):
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    nonzero = {}
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
        nonzero[init.name] = np.count_nonzero(numpy_helper.to_array(init))
    flops = 0.0
    for n in m.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            # Conv: every output position multiplies each weight once (grouped convs included: the
            # weight holds Cin/groups per output channel). ConvTranspose: every *input* position
            # scatters through each weight once, so the input's spatial size counts.
            w = shapes.get(n.input[1])
            at = shapes.get(n.output[0]) if n.op_type == "Conv" else shapes.get(n.input[0])
            if w and at:
                weights = nonzero.get(n.input[1], float(np.prod(w)))
                flops += 2.0 * float(np.prod(at[2:])) * float(weights)
        elif n.op_type in ("Gemm", "MatMul"):
            a, y = shapes.get(n.input[0]), shapes.get(n.output[0])
            if a and y:
                trans_a = any(att.name == "transA" and att.i for att in n.attribute)
                flops += 2.0 * float(np.prod(y)) * (a[0] if trans_a and n.op_type == "Gemm" else a[-1])
    return flops


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def measure_peak(seconds: float = 1.0, n: int = 1024, trials: int = 5) -> dict[str, dict[str, float]]:
    """G(FL)OP/s of large matmuls per compute type: {"fp32": {"best", "worst", "trials"}, ...}.

    Each type is timed in `trials` short trials (the budget `seconds` split between them) and the
    best trial is the peak: a machine's noise only ever slows a kernel down, so the best is the
    closest to what it can do, and worst/best is the spread that run saw.
    fp32: numpy's BLAS and ONNX Runtime's MatMul (MLAS is often the faster one); bf16: torch, only on
    CPUs with native bf16 (AVX512-bf16 or AMX; elsewhere torch emulates it at a tiny fraction of
    fp32, which is no peak); int8: ONNX Runtime's MatMulInteger, the kernel int8 convs lower to.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    ops = 2.0 * n**3
    kernels: dict[str, list[Callable[[], Any]]] = {
        "fp32": [lambda: a @ a, _ort_matmul("MatMul", {"a": a, "b": a})]
    }
    flags = cpu_flags()
    if importlib.util.find_spec("torch") is not None and flags & {"avx512_bf16", "amx_bf16"}:
        import torch

        t = torch.from_numpy(a).to(torch.bfloat16)
        kernels["bf16"] = [lambda: t @ t]
    feeds = {
        "a": rng.integers(0, 255, (n, n), dtype=np.uint8),
        "b": rng.integers(-127, 127, (n, n), dtype=np.int8),
    }
    kernels["int8"] = [_ort_matmul("MatMulInteger", feeds)]
    out = {}
    for kind, fns in kernels.items():
        per_trial = []
        for _ in range(trials):
            per_trial.append(
                max(
                    ops / (float(np.median(time_fn(fn, 1, 0, seconds / trials / len(fns), 1))) / 1e3) / 1e9
                    for fn in fns
                )
            )
        out[kind] = {"best": max(per_trial), "worst": min(per_trial), "trials": float(trials)}
    return out


def _ort_matmul(op: str, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """A call of one square ONNX Runtime matmul node (`MatMul` or `MatMulInteger`)."""
    import onnxruntime as ort
    from onnx import helper

    n = feeds["a"].shape[0]
    out_type = np.int32 if op == "MatMulInteger" else np.float32

    def info(name: str, dtype) -> Any:
        return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [n, n])

    g = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])],
        "mm",
        [info(k, v.dtype) for k, v in feeds.items()],
        [info("y", out_type)],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, feeds)


# ------------------------------------------------------------------------------------- engines
def _compute_kind(precision: str, ov_hint: str = "") -> str:
    """The peak a row is measured against: int8, or the float type OpenVINO says it computes in
    (its hint reads "bf16" in a config, "<Type: 'bfloat16'>" from a compiled model); else fp32."""
    if precision == "int8":
        return "int8"
    hint = ov_hint.lower()
    if "bf16" in hint or "bfloat16" in hint:
        return "bf16"
    return "fp16" if "f16" in hint or "float16" in hint else "fp32"


class SamplerRunner(Runner):
    """vaegan's own runtime on one backend: Sampler.decode/encode, input checks and chunking included."""

    def __init__(self, sampler: Any, component: str):
        self.sampler, self.component = sampler, component
        self.info = RunnerInfo(**sampler.backend_info[component])

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.sampler.decode(x) if self.component == "decoder" else self.sampler.encode(x)
        return list(out) if isinstance(out, tuple) else [out]

    def close(self) -> None:
        self.sampler.close()


class RawOrtRunner(Runner):
    """The peer: an ONNX Runtime session with its default options, as most people run a model."""

    def __init__(self, path: Path, artifact: Artifact):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.info = RunnerInfo("ort-raw", "CPUExecutionProvider", artifact.precision, artifact.path)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})


class OpenVinoDefaultRunner(Runner):
    """The peer: OpenVINO's CPU plugin with its own defaults (bf16 for fp32 IR where the CPU has it)."""

    def __init__(self, path: Path, artifact: Artifact):
        from vaegan.runtime.backends.openvino import openvino_module

        compiled = openvino_module().Core().compile_model(str(path), "CPU")
        self.request = compiled.create_infer_request()
        hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.info = RunnerInfo("openvino-default", "CPU", artifact.precision, artifact.path, {"hint": hint})

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.request.infer({0: x}).values())


class TorchEagerRunner(Runner):
    """The peer: the trained fp32 model in PyTorch eager mode, wrapped in the exported graph's I/O."""

    def __init__(
        self, module: Any, component: str, threads: int, output_range: Any = (-1.0, 1.0), origin: str = ""
    ):
        import torch

        from vaegan.export.onnx import DecoderGraph, EncoderGraph

        if threads:
            torch.set_num_threads(threads)
        graph = DecoderGraph if component == "decoder" else EncoderGraph
        self.graph = graph(module, tuple(output_range)).eval()
        self.info = RunnerInfo("torch-eager", "cpu", "fp32", origin)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.graph(torch.from_numpy(x))
        return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def make_runner(
    engine: str,
    art_dir: Path,
    m: Manifest,
    precision: str,
    component: str,
    threads: int,
    modules: dict[str, Any] | None = None,
) -> tuple[Runner, str] | str:
    """(runner, the precision it computes in), or why the engine is skipped.

    The compute precision is what the row's peak fraction is measured against: ONNX Runtime's CPU
    kernels run fp16 models in fp32; OpenVINO reports its own choice (bf16 for fp32 IR by default
    on CPUs that have it).
    """
    fmt = ENGINE_FORMATS[engine]
    try:
        if engine == "torch-eager":
            if importlib.util.find_spec("torch") is None:
                return "torch is not installed"
            if precision != "fp32":
                return "PyTorch eager runs the fp32 model only"
            output_range = m.model.get("output_range", (-1.0, 1.0))
            if modules and modules.get(component) is not None:
                return TorchEagerRunner(
                    modules[component], component, threads, output_range, "given modules"
                ), "fp32"
            if m.run.get("source") == "user modules":
                return "exported from user modules: PyTorch eager runs only when they are given (run_bench(modules=...))"
            run = Path(m.run.get("path", ""))
            if not (run / "model.safetensors").exists():
                return f"the run dir {run} is not here (pass --run-dir)"
            from vaegan.trainer.checkpoint import load_model

            _, model = load_model(run)
            return TorchEagerRunner(
                getattr(model, component), component, threads, output_range, str(run)
            ), "fp32"
        art = m.find(component, precision, fmt)
        if art is None:
            return f"no {precision} {fmt} {component} in the artifact dir"
        path = verify(art_dir, art)
        if engine.startswith("vaegan-"):
            from vaegan.runtime import Sampler

            s = Sampler.load(
                art_dir,
                backend=engine.removeprefix("vaegan-"),
                precision=precision,
                threads=threads,
                max_n=10**6,
            )
            runner: Runner = SamplerRunner(s, component)
            return runner, _compute_kind(precision, runner.info.details.get("INFERENCE_PRECISION_HINT", ""))
        if engine == "ort-raw":
            return RawOrtRunner(path, art), _compute_kind(precision)
        runner = OpenVinoDefaultRunner(path, art)
        return runner, _compute_kind(precision, runner.info.details["hint"])
    except BackendUnavailable as e:
        return str(e)


def run_bench(
    art_dir: str | Path | list[str | Path],
    cfg: BenchConfig,
    run_dir: str | Path | None = None,
    progress: bool = True,
    modules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every engine x precision x component x batch of `cfg`, for one artifact dir or several.

    Several dirs (two exports of one model, before and after a change) take their turns in the same
    rounds, so the machine's noise hits them alike, and every row of the others is compared with the
    same row of the first. modules: {"decoder": nn.Module, ...} for the PyTorch eager peer of a model
    exported with export_model."""
    given = art_dir if isinstance(art_dir, list | tuple) else [art_dir]
    dirs = {str(d): Path(d) for d in given}  # label (the dir as given) -> dir
    labels = list(dirs)
    if len(labels) != len(given):
        raise ConfigError(f"an artifact dir is given twice: {', '.join(map(str, given))}")
    manifests = {label: Manifest.load(d) for label, d in dirs.items()}
    for m in manifests.values():
        if run_dir is not None:
            m.run["path"] = str(run_dir)
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
            made = make_runner(engine, dirs[label], manifests[label], precision, comp, cfg.threads, modules)
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
    return {
        "schema_version": BENCH_SCHEMA,
        "machine": machine_info(),
        "artifact_dir": labels[0],
        "model": manifests[labels[0]].model,
        "config": asdict(cfg),
        "flops_per_image": flops[labels[0]],
        "peak_gflops": {k: v["best"] for k, v in peak.items()},
        "peak_spread": peak,
        "rows": [asdict(r) for r in rows],
        "skipped": skipped,
        "ratios": ratios(first) | int8_headroom(peak),
        "comparisons": comparisons(rows, labels),
    }


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
    """The comparisons docs/benchmarks.md reports, each from this one run, on the decoder.

    `a_vs_b` is b's latency over a's: above 1 means a is faster. `runtime_overhead_b*` is
    (vaegan runtime / raw session) - 1: 0.03 means 3% slower than a raw ONNX Runtime session.
    `*_peak_fraction_b*` is the achieved fraction of the measured peak of the precision it runs in.
    """
    out: dict[str, float] = {}
    batches = sorted({r.batch for r in rows})
    big = batches[-1] if batches else 0

    def put(name: str, slow: float | None, fast: float | None) -> None:
        if slow and fast:
            out[name] = slow / fast

    for b in batches:
        ort_fp32, raw_fp32 = _median(rows, "vaegan-ort", "fp32", b), _median(rows, "ort-raw", "fp32", b)
        if ort_fp32 and raw_fp32:
            out[f"runtime_overhead_b{b}"] = ort_fp32 / raw_fp32 - 1.0
        put(f"ort_fp32_vs_torch_eager_b{b}", _median(rows, "torch-eager", "fp32", b), ort_fp32)
    if not big:
        return out
    for backend in ("ort", "openvino"):
        put(
            f"{backend}_int8_vs_fp32_b{big}",
            _median(rows, f"vaegan-{backend}", "fp32", big),
            _median(rows, f"vaegan-{backend}", "int8", big),
        )
    fastest = {
        p: min(
            (
                r
                for r in rows
                if r.batch == big
                and r.engine.startswith("vaegan-")
                and r.component == "decoder"
                and r.precision == p
            ),
            key=lambda r: r.median_ms,
            default=None,
        )
        for p in ("fp32", "fp16", "int8")
    }
    if fastest["fp32"] and fastest["int8"]:
        put(f"best_int8_vs_best_fp32_b{big}", fastest["fp32"].median_ms, fastest["int8"].median_ms)
    ov_default = _median(rows, "openvino-default", "fp32", big)
    best = min((r for r in fastest.values() if r), key=lambda r: r.median_ms, default=None)
    if best:
        put(f"best_vaegan_vs_openvino_default_b{big}", ov_default, best.median_ms)
    put(
        f"vaegan_openvino_fp16_vs_openvino_default_b{big}",
        ov_default,
        _median(rows, "vaegan-openvino", "fp16", big),
    )
    for p, r in fastest.items():
        if r and r.peak_fraction is not None:
            out[f"{p}_decoder_peak_fraction_b{big}"] = r.peak_fraction
    return out


# -------------------------------------------------------------------------------------- output
def _fraction_cell(r: dict[str, Any]) -> str:
    if r["peak_fraction"] is not None:
        return f"{100 * r['peak_fraction']:.1f} ({r['peak_kind']})"
    return "above peak (flagged)" if r.get("note") else "-"


def table(result: dict[str, Any]) -> str:
    several = any(r.get("artifact") for r in result["rows"])
    head = ("engine", "prec", "comp", "batch", "median ms", "p90 ms", "p99 ms", "img/s", "GFLOP/s", "% peak")
    lines = [("artifact", *head) if several else head]
    for r in result["rows"]:
        frac = _fraction_cell(r)
        lines.append(
            (
                *((r["artifact"],) if several else ()),
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
    from vaegan.core.text import text_table

    return text_table(lines)


def markdown(result: dict[str, Any]) -> str:
    mi = result["machine"]
    out = [
        f"Machine: {mi['cpu']}, {mi['cores']} cores; onnxruntime {mi.get('onnxruntime', '-')}, "
        f"openvino {mi.get('openvino', '-')}, torch {mi.get('torch', '-')}.",
        "Peak (large matmul, best of the trials interleaved with the rows; worst trial in brackets): "
        + ", ".join(
            f"{k} {v['best']:.0f} ({v['worst']:.0f}) GFLOP/s"
            for k, v in result.get("peak_spread", {}).items()
        )
        + ".",
        "",
        "| engine | precision | component | batch | median ms | p90 ms | p99 ms | images/s | GFLOP/s | % of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        frac = _fraction_cell(r)
        out.append(
            f"| {r['engine']} | {r['precision']} | {r['component']} | {r['batch']} | {r['median_ms']:.3f} | "
            f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:.0f} | {r['gflops']:.1f} | {frac} |"
        )
    if result["ratios"]:
        out += ["", "| ratio (this run) | value |", "|---|---:|"]
        out += [f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()]
    if result.get("comparisons"):
        out += [
            "",
            "| artifact dir | against | engine | precision | component | batch | speedup |",
            "|---|---|---|---|---|---:|---:|",
        ]
        out += [
            f"| {c['artifact']} | {c['against']} | {c['engine']} | {c['precision']} | {c['component']} | "
            f"{c['batch']} | {c['speedup']:.3f}x |"
            for c in result["comparisons"]
        ]
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
        series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for r in result["rows"]:
            if r["component"] == comp:
                key = (r.get("artifact", ""), r["engine"], r["precision"])
                series.setdefault(key, []).append((r["batch"], r["images_per_s"]))
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
        ax.set_title(f"{comp}: throughput by engine ({result['machine']['cores']} cores)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    from vaegan.core.io import atomic_write

    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_json(result: dict[str, Any], path: Path) -> None:
    from vaegan.core.io import write_json as _w

    _w(path, result)


__all__ = ["BenchConfig", "json", "markdown", "plot", "run_bench", "table"]
