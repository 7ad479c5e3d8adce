"""Timing, and what the machine can do: its peak per compute type, its CPU flags and versions."""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.core.cpu import cpu_flags, cpuinfo, isa_summary


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


def machine_info() -> dict[str, Any]:
    """The CPU's model name, cores, and the versions of the engines a result depends on."""
    cpu = platform.processor() or platform.machine()
    for line in cpuinfo().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    info: dict[str, Any] = {
        "cpu": cpu,
        "isa": isa_summary(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for mod in ("onnxruntime", "openvino", "torch", "numpy"):
        if importlib.util.find_spec(mod) is not None:
            info[mod] = __import__(mod).__version__
    return info


def provenance(command: str | None = None) -> dict[str, Any]:
    """Where a results file came from: the command, vaegan's commit (its version outside a git
    checkout; "+dirty" with uncommitted changes), the UTC date and the machine. The docs render
    their tables from files that carry this (benchmarks/docs.py)."""
    import vaegan

    if command is None:
        prog = Path(sys.argv[0])
        head = ["python", os.path.relpath(prog)] if prog.suffix == ".py" else [prog.name]
        command = shlex.join([*head, *sys.argv[1:]])
    source = Path(vaegan.__file__).resolve().parents[1]
    commit = f"v{vaegan.__version__}"
    try:
        git = ["git", "-C", str(source)]
        rev = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if rev.returncode == 0:
            dirty = subprocess.run(
                [*git, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            commit = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "command": command,
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
    }


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
