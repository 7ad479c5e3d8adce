"""ONNX FP32 graphs of the encoder and the EMA decoder, with pre/post-processing inside the graph.

encoder: images uint8 [N,H,W,C] -> mu, logvar float32 [N,Z]   (normalisation to [-1, 1] in the graph)
decoder: z float32 [N,Z] -> images uint8 [N,H,W,C]            (de-normalise, round, clamp, cast)

Single file, dynamic batch, opset 18 (parsed by TensorRT 10 and 11), the model config in
metadata_props. Batch norm is folded into the convolutions by the exporter, and into a Gemm before it
by rewrite.py, which also computes the decoder's thin output conv a block of pixels at a time.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from vaegan.core.contract import PARITY_LIMITS, Parity
from vaegan.core.errors import ExportError
from vaegan.core.manifest import IO_NAMES
from vaegan.export import rewrite
from vaegan.trainer.data import pixels_to_unit, unit_to_pixels

OPSET = 18
log = logging.getLogger(__name__)


class EncoderGraph(nn.Module):
    """uint8 NHWC images -> the encoder's (mu, logvar); pixels mapped to the range the model uses."""

    def __init__(self, encoder: nn.Module, output_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        self.encoder, self.output_range = encoder, output_range

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(pixels_to_unit(images, *self.output_range))
        return mu, logvar


class DecoderGraph(nn.Module):
    """z -> uint8 NHWC images, from the decoder's output range."""

    def __init__(self, decoder: nn.Module, output_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        self.decoder, self.output_range = decoder, output_range

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return unit_to_pixels(self.decoder(z), *self.output_range)


def export_onnx(
    graph: nn.Module, example: torch.Tensor, component: str, path: Path, metadata: dict
) -> list[str]:
    """Export one graph to `path` and check it; returns the rewrites applied (vaegan/export/rewrite.py)."""
    inputs, outputs = IO_NAMES[component]
    batch = torch.export.Dim("batch", min=1, max=65536)
    buf = io.StringIO()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # it warns about torchvision ops this model never uses
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):  # the exporter narrates to stdout
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph.eval(),
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=({0: batch},),
                external_data=False,
                optimize=True,
            )
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; each becomes one clear line
        raise ExportError(
            f"the {component} cannot be exported to ONNX: {unexportable(graph, example, e)}"
        ) from e
    finally:
        quiet.setLevel(level)
    if program is None:
        raise ExportError(f"torch.onnx.export returned no program for the {component}")
    model = program.model_proto
    for k, v in metadata.items():
        model.metadata_props.append(
            onnx.StringStringEntryProto(key=k, value=v if isinstance(v, str) else json.dumps(v))
        )
    model.doc_string = f"vaegan {component}"
    rewrites = rewrite.apply(model)
    onnx.checker.check_model(model, full_check=True)
    from vaegan.core.io import write_bytes

    write_bytes(path, model.SerializeToString())
    return rewrites


def unexportable(graph: nn.Module, example: torch.Tensor, error: Exception) -> str:
    """The op the exporter failed on and the module it sits in, read from torch.export's graph
    (each node keeps the module stack it came from); the exporter's own words otherwise."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}")  # the exporter colours its text
    found = re.search(r"(?:aten|torch\.ops\.aten)[:.]+([A-Za-z0-9_]+)", text)
    op = found.group(1) if found else None
    where = ""
    if op is not None:
        try:
            program = torch.export.export(graph.eval(), (example,))
            for node in program.graph.nodes:
                if node.op == "call_function" and op in str(node.target):
                    stack = node.meta.get("nn_module_stack") or {}
                    if stack:
                        path, cls = list(stack.values())[-1]
                        where = f" in module {path.removeprefix('L__self__').strip('._') or '(top)'} ({getattr(cls, '__name__', cls)})"
                    break
        except Exception:  # noqa: BLE001, S110 - the hint is best effort; the op name stands alone
            pass
        return f"op aten.{op}{where} has no ONNX export (opset {OPSET}); replace it or export that part differently"
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first[:300]


def check_parity(
    graph: nn.Module,
    runner: Any,
    name: str,
    component: str,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    batches: list[int],
    seed: int = 0,
) -> dict:
    """The exported file, run by the runtime's runner, vs torch on fresh random inputs per batch size.

    The limits are core.manifest.PARITY_LIMITS: 1 grey level for a decoder's uint8 images, 1e-2
    for an encoder's mu.
    """
    g = torch.Generator().manual_seed(seed)
    worst, per_batch = 0.0, {}
    for b in batches:
        if component == "decoder":
            x = torch.randn(b, latent_dim, generator=g)
            ref = graph(x).numpy().astype(np.int32)
            got = runner.run(x.numpy())[0].astype(np.int32)
        else:
            x = torch.randint(0, 256, (b, *image_shape), generator=g, dtype=torch.uint8)
            ref = graph(x)[0].detach().numpy()
            got = runner.run(x.numpy())[0]
        err = float(np.abs(ref - got).max())
        per_batch[str(b)] = err
        worst = max(worst, err)
    result = Parity("torch", component, worst, per_batch=per_batch)
    if not result.within_limit:
        if component == "decoder":
            raise ExportError(
                f"{name} differs from the torch decoder by {worst:.0f} grey levels (limit "
                f"{PARITY_LIMITS['decoder']:.0f}): the ONNX graph is wrong; report this with the run's config.json"
            )
        raise ExportError(
            f"{name} differs from the torch encoder by {worst:.3g} in mu (limit {PARITY_LIMITS['encoder']:g})"
        )
    return result.to_dict()


def tensor_specs(path: Path) -> tuple[list[dict], list[dict]]:
    """Names, shapes ('batch' for dynamic) and numpy dtypes of a model's graph inputs and outputs."""
    model = onnx.load(str(path), load_external_data=False)

    def spec(vi) -> dict:
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else "batch" for d in t.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        return {"name": vi.name, "shape": shape, "dtype": dtype}

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]
