"""FLOPs per image of an ONNX graph: what a row's GFLOP/s and fraction of peak are computed from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaegan.core.errors import ArtifactCorrupt


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
