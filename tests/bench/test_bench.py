"""`vaegan bench` output format and its peak measurement, on the tiny fixture (not its speed)."""

import json

from tests.conftest import run_cli
from vaegan.bench import (
    BENCH_SCHEMA,
    BenchConfig,
    BenchResult,
    markdown,
    measure_peak,
    model_flops,
    run_bench,
    table,
)
from vaegan.bench.run import _row, _set_fractions


def test_peak_measurement_reports_each_precision_with_its_spread():
    peak = measure_peak(seconds=0.2, n=256, trials=3)
    assert {"fp32", "int8"} <= set(peak)
    for p in peak.values():
        assert p["trials"] == 3 and 0.1 < p["worst"] <= p["best"]


def test_a_row_above_the_peak_is_flagged_not_reported_as_a_fraction():
    """The 200%-of-peak row a noisy run once printed: it is flagged and carries no fraction."""
    peak = {"fp32": {"best": 100.0, "worst": 50.0, "trials": 3.0}}
    rows = [_row("e", "fp32", "decoder", 64, [1.0], flops, "fp32") for flops in (0.5e6, 3e6)]
    assert _set_fractions(rows, peak)  # one row is above
    ok, above = rows
    assert ok.peak_fraction == 0.5e6 * 64 / 1e-3 / 1e9 / 100.0 and not ok.note
    assert above.peak_fraction is None and "above the measured fp32 peak" in above.note
    assert "above peak" in table(rows)


def test_model_flops_counts_convs_and_gemms(art_dir):
    flops = model_flops(art_dir / "decoder.fp32.onnx")
    # tiny decoder: z=8 -> 4x4x32 (Gemm), 8x8: 32->16, 16x16: 16->8, 16x16: 8->1 (3x3 convs)
    expect = 2 * (8 * 512 + 8 * 8 * 16 * 32 * 9 + 16 * 16 * 8 * 16 * 9 + 16 * 16 * 1 * 8 * 9)
    assert abs(flops - expect) / expect < 0.01


def test_bench_result_schema(art_dir):
    cfg = BenchConfig(
        engines=["vaegan-ort", "vaegan-tensorrt", "ort-raw", "openvino-default", "torch-eager"],
        precisions=["fp32"],
        batches=[1, 4],
        warmup=1,
        iters=3,
        peak=True,
    )
    res = run_bench(art_dir, cfg, progress=False)
    r = json.loads(json.dumps(res.to_dict()))  # what --json writes
    assert r["schema_version"] == BENCH_SCHEMA and r["machine"]["cores"] >= 1
    assert r["provenance"]["commit"] and r["provenance"]["machine"]["isa"] and r["provenance"]["date"]
    assert BenchResult.from_dict(r).to_dict() == r  # the docs render their tables from the file
    rows = r["rows"]
    assert {(x["engine"], x["batch"]) for x in rows} >= {("vaegan-ort", 1), ("ort-raw", 4)}
    for x in rows:
        assert x["iters"] == 3 and x["median_ms"] > 0 and x["p99_ms"] >= x["median_ms"] * 0.999
        assert x["images_per_s"] > 0
        assert (x["peak_fraction"] is not None and 0 < x["peak_fraction"] <= 1) or x["note"]
    assert "vaegan_ort_fp32_overhead_vs_ort_raw_fp32_b4" in r["ratios"]
    # the best vaegan row against the best peer row, per batch, naming both
    (b4,) = [b for b in r["best"] if b["batch"] == 4]
    assert b4["ratio"] == r["ratios"]["best_vaegan_vs_best_peer_b4"] == b4["peer_ms"] / b4["vaegan_ms"]
    assert b4["vaegan"].startswith("vaegan-") and not b4["peer"].startswith("vaegan-")
    headroom = r["peak_gflops"]["int8"] / r["peak_gflops"]["fp32"]
    assert r["ratios"]["int8_vs_fp32_peak"] == headroom  # the machine's int8 ceiling, said in every run
    assert "torch-eager/fp32/decoder" in r["skipped"]  # the fixture's run dir was temporary
    assert "tensorrt" in r["skipped"]["vaegan-tensorrt/fp32/decoder"]  # no engine here: said, not hidden
    assert "| vaegan-ort | fp32 | decoder | 1 |" in markdown(res)
    assert "median ms" in table(res.rows)


def _quick_bench(tmp_path, *dirs, precision: str, batch: str, plot: bool = False):
    """`vaegan bench` over vaegan-ort and a raw session, a few calls per case, JSON and Markdown out."""
    out = ["--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")]
    out += ["--plot", str(tmp_path / "b.png")] if plot else []
    return run_cli(
        "bench",
        *map(str, dirs),
        *("--engine", "vaegan-ort,ort-raw", "--precision", precision, "--batch", batch),
        *("--iters", "3", "--warmup", "1", "--no-peak", *out),
    )


def test_bench_cli_writes_json_markdown_and_plot(art_dir, tmp_path):
    r = _quick_bench(tmp_path, art_dir, precision="fp32,int8", batch="2", plot=True)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert len(data["rows"]) == 4 and data["peak_gflops"] == {}
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vaegan-ort" in r.stdout and "median ms" in r.stdout
    bad = run_cli("bench", str(art_dir), "--engine", "tflite")
    assert bad.returncode == 2 and "unknown engine" in bad.stderr


def test_two_artifact_dirs_take_turns_and_are_compared_row_by_row(art_dir, tmp_path):
    """The before/after comparison of two exports: one run, rows labelled by dir, each row of the
    second compared with the same row of the first."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(art_dir, other)
    r = _quick_bench(tmp_path, art_dir, other, precision="fp32", batch="1,4")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert {x["artifact"] for x in data["rows"]} == {str(art_dir), str(other)} and len(data["rows"]) == 8
    comps = data["comparisons"]
    assert len(comps) == 4 and all(
        c["against"] == str(art_dir) and c["artifact"] == str(other) for c in comps
    )
    for c in comps:
        (mine,) = [
            x
            for x in data["rows"]
            if x["artifact"] == str(other) and x["engine"] == c["engine"] and x["batch"] == c["batch"]
        ]
        (base,) = [
            x
            for x in data["rows"]
            if x["artifact"] == str(art_dir) and x["engine"] == c["engine"] and x["batch"] == c["batch"]
        ]
        assert c["speedup"] == base["median_ms"] / mine["median_ms"]
    assert "vaegan_ort_fp32_overhead_vs_ort_raw_fp32_b4" in data["ratios"]  # the ratios are the first dir's
    assert (
        r.stdout.splitlines()[0].startswith("artifact")
        and f"{other} vs {art_dir}: vaegan-ort fp32 decoder b4:" in r.stdout
    )
    assert "| speedup |" in (tmp_path / "b.md").read_text()
    twice = run_cli("bench", str(art_dir), str(art_dir), "--iters", "1", "--no-peak")
    assert (
        twice.returncode == 2
        and "given twice" in twice.stderr
        and len(twice.stderr.strip().splitlines()) == 1
    )


def test_flops_of_convtranspose_grouped_conv_and_gemm_match_a_hand_count(tmp_path):
    """2 x MACs, counted by hand: a ConvTranspose scatters each input pixel through its whole weight,
    a grouped conv's weight already holds Cin/groups per output channel, Gemm with transA reads K first."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from vaegan.bench import model_flops

    rng = np.random.default_rng(0)
    w_t = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)  # ConvTranspose: [Cin 8, Cout 4, 4x4]
    w_g = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)  # Conv 4 -> 6, groups 2: [6, 4/2, 3x3]
    a_t = rng.standard_normal((5, 7)).astype(np.float32)  # Gemm transA: A^T is [7, 5] @ B [5, 3]
    b = rng.standard_normal((5, 3)).astype(np.float32)
    nodes = [
        helper.make_node(
            "ConvTranspose", ["x", "wt"], ["t"], strides=[2, 2], pads=[1, 1, 1, 1]
        ),  # 5x5 -> 10x10
        helper.make_node("Conv", ["t", "wg"], ["c"], group=2, pads=[1, 1, 1, 1]),  # 10x10 -> 10x10
        helper.make_node("Gemm", ["at", "b"], ["g"], transA=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 5])],
        [
            helper.make_tensor_value_info("c", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("g", TensorProto.FLOAT, None),
        ],
        [numpy_helper.from_array(v, k) for k, v in (("wt", w_t), ("wg", w_g), ("at", a_t), ("b", b))],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    hand = 2 * (5 * 5 * 8 * 4 * 4 * 4) + 2 * (10 * 10 * 6 * 2 * 3 * 3) + 2 * (7 * 3 * 5)
    assert model_flops(path) == hand


def test_only_rows_within_the_quality_tolerance_count_as_vaegans_best(art_dir):
    """An int8 that lost quality at export is fast but not vaegan's best; the peer's fastest row, at
    any precision, is what it is compared with."""
    from vaegan.bench.run import best_rows, quality_tolerable, ratios
    from vaegan.core.manifest import Manifest

    m = Manifest.load(art_dir)
    m.quality = {"fp32": {}, "int8": {"within_tolerance": False}, "openvino-int8": {"within_tolerance": True}}
    rows = [
        _row("vaegan-ort", "fp32", "decoder", 64, [10.0], 1e6, "fp32"),
        _row("vaegan-ort", "int8", "decoder", 64, [4.0], 1e6, "int8"),  # out of tolerance
        _row("vaegan-openvino", "int8", "decoder", 64, [5.0], 1e6, "int8"),  # its IR is within
        _row("openvino-default", "fp32", "decoder", 64, [6.0], 1e6, "bf16"),
        _row("ort-raw", "int8", "decoder", 64, [4.5], 1e6, "int8"),
    ]
    ok = quality_tolerable(m)
    (best,) = best_rows(rows, ok)
    assert best["vaegan"] == "vaegan-openvino int8" and best["peer"] == "ort-raw int8"
    assert ratios(rows, ok)["best_vaegan_vs_best_peer_b64"] == 4.5 / 5.0
    assert ratios(rows)["best_vaegan_vs_best_peer_b64"] == 4.5 / 4.0  # without the check int8 would count
