"""The Open Inference Protocol (KServe v2; what Triton, KServe and Seldon MLServer speak) over the
served Sampler: the same models, tensor names, datatypes and shapes as the Triton repository that
`vaegan export --triton` writes, so one client works against `vaegan serve` and against Triton.

Models: `decoder` (z FP32 [-1, latent_dim] -> images UINT8 [-1, H, W, C]) and, when the artifact dir
has one, `encoder` (images -> mu, logvar FP32 [-1, latent_dim]). Version policy: one version, "1",
which is whatever precision and backend `vaegan serve` was started with (--precision, --backend);
the model metadata's `parameters` say which. Run one `vaegan serve` per precision to offer several.

This module knows the protocol's data model; server.py maps it onto HTTP (JSON and the binary tensor
extension) and gRPC (tritonclient's generated GRPCInferenceService), both into the same batchers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import np_to_triton_dtype, triton_to_np_dtype

from vaegan.core.contract import contract
from vaegan.core.errors import InputError

VERSION = "1"
MAX_ELEMENTS = 1 << 31  # no request tensor is larger (the body and message limits come far sooner)
# The protocol's names for the numpy types vaegan's graphs take, in Triton's own mapping (tritonclient)
SERVED_DTYPES = ("float32", "float16", "uint8", "int8", "int32")
DATATYPES = {d: np_to_triton_dtype(np.dtype(d)) for d in SERVED_DTYPES}
NUMPY = {v: np.dtype(triton_to_np_dtype(v)) for v in DATATYPES.values()}


class ModelNotFound(InputError):
    """A model name (or version) this server does not serve: HTTP 404, gRPC NOT_FOUND."""


@dataclass
class Tensor:
    name: str
    datatype: str  # "FP32", "UINT8"
    shape: list[int]  # -1 for the batch axis


@dataclass
class OipModel:
    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    # one input batch and the request's parameters -> Future of the output rows (the batcher)
    run: Callable[[np.ndarray, dict[str, Any]], Future]
    split: Callable[[np.ndarray], list[np.ndarray]]  # the batcher's rows -> each output tensor
    parameters: dict[str, str]

    def metadata(self) -> dict[str, Any]:
        """The model metadata response of the protocol (also what Triton answers for the repository)."""
        return {
            "name": self.name,
            "versions": [VERSION],
            "platform": "vaegan",
            "inputs": [t.__dict__ for t in self.inputs],
            "outputs": [t.__dict__ for t in self.outputs],
            "parameters": self.parameters,
        }

    def check_input(self, name: str, datatype: str, shape: list[int], data: np.ndarray | None = None) -> None:
        """A tensor that is not this model's input, with the message a client can act on."""
        (want,) = self.inputs
        if name != want.name:
            raise InputError(f"{self.name} takes one input tensor {want.name!r}, got {name!r}")
        if datatype != want.datatype:
            raise InputError(f"input {name!r} must be {want.datatype}, got {datatype}")
        if len(shape) != len(want.shape) or any(
            w != -1 and g != w for g, w in zip(shape, want.shape, strict=False)
        ):
            raise InputError(
                f"input {name!r} must have shape {want.shape} (-1: any batch), got {list(shape)}"
            )
        if shape[0] < 1:
            raise InputError(f"input {name!r} needs at least one row, got shape {list(shape)}")
        if math.prod(shape) > MAX_ELEMENTS:  # exact (Python ints): [2**62, 32] does not wrap around
            raise InputError(
                f"input {name!r}: shape {list(shape)} is {math.prod(shape):,} elements, over {MAX_ELEMENTS:,}"
            )
        if data is not None and data.size != math.prod(shape):
            raise InputError(
                f"input {name!r} has {data.size} elements, its shape {list(shape)} needs {math.prod(shape)}"
            )


def models(
    sampler: Any,
    decode: Callable[[np.ndarray], Future],
    encode: Callable[[np.ndarray], Future] | None,
    sample: Callable[[int, dict[str, Any]], Future],
) -> dict[str, OipModel]:
    """The served models: the decoder and encoder from the manifest's I/O contract (the same source as
    the Triton repository), and `sample`, what POST /v1/sample does: input n (INT32 [1]), request
    parameters seed, temperature and class, output images."""
    params = {"precision": sampler.backend_info["precision"], "backend": sampler.backend_info["backend"]}
    out = {}
    for name, run in (("decoder", decode), ("encoder", encode)):
        if run is None:
            continue
        ins, outs = contract(name, sampler.latent_dim, sampler.image_shape)

        def tensors(specs: list[dict]) -> list[Tensor]:
            return [Tensor(t["name"], DATATYPES[t["dtype"]], [-1, *t["shape"][1:]]) for t in specs]

        split: Callable[[np.ndarray], list[np.ndarray]]
        if name == "decoder":
            split = _whole
        else:
            split = functools.partial(_halves, z=sampler.latent_dim)
        out[name] = OipModel(name, tensors(ins), tensors(outs), _tensor_only(run), split, params)
    images = Tensor("images", "UINT8", [-1, *sampler.image_shape])
    classes = sampler.prior.class_names if getattr(sampler, "prior", None) is not None else None
    out["sample"] = OipModel(
        "sample",
        [Tensor("n", "INT32", [1])],
        [images],
        lambda x, p: sample(int(x.reshape(-1)[0]), p),
        _whole,
        params | ({"classes": ",".join(classes)} if classes else {}),
    )
    return out


def _tensor_only(run: Callable[[np.ndarray], Future]) -> Callable[[np.ndarray, dict[str, Any]], Future]:
    return lambda x, _params: run(x)


def _whole(rows: np.ndarray) -> list[np.ndarray]:
    return [rows]


def _halves(rows: np.ndarray, z: int) -> list[np.ndarray]:
    """The encoder batcher's rows are mu and logvar side by side."""
    return [rows[:, :z], rows[:, z:]]


def find(served: dict[str, OipModel], name: str, version: str | None = None) -> OipModel:
    if name not in served:
        raise ModelNotFound(f"no model {name!r} here: this server has {', '.join(served)}")
    if version not in (None, "", VERSION):
        raise ModelNotFound(
            f"model {name!r} has version {VERSION} only (the precision vaegan serve runs), not {version!r}"
        )
    return served[name]


def to_array(datatype: str, shape: list[int], values: Any) -> np.ndarray:
    """JSON `data` (nested or flat, as the protocol allows) as a numpy array of the tensor's type.
    Integer tensors take whole numbers in their range only: 0.5 for a UINT8 is refused, not truncated."""
    if datatype not in NUMPY:
        raise InputError(f"datatype {datatype!r} is not one vaegan's models take (FP32, UINT8)")
    dtype = NUMPY[datatype]
    try:
        if dtype.kind in "iu":
            raw = np.asarray(values)
            if raw.dtype.kind not in "iu" and raw.size:
                raise InputError(
                    f"tensor data for a {datatype} tensor must be whole numbers, got {raw.dtype} values"
                )
            info = np.iinfo(dtype)
            if raw.size and (raw.min() < info.min or raw.max() > info.max):
                raise InputError(f"tensor data for a {datatype} tensor must lie in {info.min}..{info.max}")
        arr = np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(f"tensor data is not a list of {datatype} numbers ({e})") from None
    if arr.size != math.prod(shape):
        raise InputError(f"tensor data has {arr.size} elements, shape {list(shape)} needs {math.prod(shape)}")
    return arr.reshape(shape)


def from_bytes(datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    """Binary tensor data (the binary extension, gRPC raw contents): little-endian, row-major."""
    if datatype not in NUMPY:
        raise InputError(f"datatype {datatype!r} is not one vaegan's models take (FP32, UINT8)")
    dtype = NUMPY[datatype].newbyteorder("<")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) != need:
        raise InputError(f"binary data is {len(raw)} bytes, {datatype} {list(shape)} needs {need}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(NUMPY[datatype])


def to_le_bytes(arr: np.ndarray) -> bytes:
    """An output tensor as the protocol's binary data: little-endian, row-major."""
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
