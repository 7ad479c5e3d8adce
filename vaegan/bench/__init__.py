"""`vaegan bench`: latency and throughput of the exported model on every engine, in one run.

Rows: engine x precision x component x batch. Engines are the vaegan runtime on each backend and
the peers people would otherwise use on the same ONNX: a raw ONNX Runtime session with default
options, OpenVINO with its default CPU config, and PyTorch eager on the trained model (when torch
and the run dir are here). Achieved GFLOP/s is reported as a fraction of this machine's peak,
measured in the same run with large matmuls (fp32 with numpy; bf16 with torch when installed).

measure: timing, the peak, the CPU; flops: FLOPs per image; peers: the engines; run: one run and
its ratios; report: table, Markdown and plot.
"""

from vaegan.bench.flops import model_flops
from vaegan.bench.measure import cpu_flags, machine_info, measure_peak, time_fn
from vaegan.bench.report import markdown, plot, table
from vaegan.bench.run import BENCH_SCHEMA, BenchResult, Row, run_bench
from vaegan.config import BenchConfig

__all__ = [
    "BENCH_SCHEMA",
    "BenchConfig",
    "BenchResult",
    "Row",
    "cpu_flags",
    "machine_info",
    "markdown",
    "measure_peak",
    "model_flops",
    "plot",
    "run_bench",
    "table",
    "time_fn",
]
