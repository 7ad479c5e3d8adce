"""The Open Inference Protocol's HTTP body: an infer request (JSON, or JSON followed by binary tensor
data, the binary tensor extension) into an input array, and output arrays into the response.

Every field is checked for its type before it is used, so a malformed request is a 400 naming the
field (`inputs[0].parameters must be a JSON object`), never an AttributeError.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vaegan.core.errors import InputError
from vaegan.runtime import oip


def parameters(obj: dict, where: str) -> dict:
    """An object's optional `parameters`, which the protocol defines as a JSON object."""
    p = obj.get("parameters")
    if p is None:
        return {}
    if not isinstance(p, dict):
        raise InputError(f"{where}parameters must be a JSON object, got {type(p).__name__}")
    return p


def parse_infer(
    model: oip.OipModel, body: bytes, head_len: str | None
) -> tuple[dict, np.ndarray, dict[str, bool]]:
    """An infer request -> (request, input array, which outputs to answer in binary)."""
    if head_len is not None:
        if not head_len.isdigit() or int(head_len) > len(body):
            raise InputError("Inference-Header-Content-Length is not the length of the JSON part of the body")
        head, raw = body[: int(head_len)], body[int(head_len) :]
    else:
        head, raw = body, b""
    try:
        req = json.loads(head)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("the inference request is not valid JSON") from None
    except RecursionError:
        raise InputError("the inference request is JSON nested too deeply") from None
    if not isinstance(req, dict):
        raise InputError("the inference request must be a JSON object")
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        want = model.inputs[0]
        raise InputError(f"{model.name} takes one input tensor {want.name!r} ({want.datatype} {want.shape})")
    t = inputs[0]
    name, datatype, shape = t.get("name"), t.get("datatype"), t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InputError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    model.check_input(str(name), str(datatype), shape)
    size = parameters(t, "inputs[0].").get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(raw):
            raise InputError(
                f"input {name!r}: binary_data_size {size!r} does not match the {len(raw)} bytes sent"
            )
        x = oip.from_bytes(str(datatype), shape, raw)
    else:
        x = oip.to_array(str(datatype), shape, t.get("data"))
    default = bool(parameters(req, "").get("binary_data_output", False))
    asked = req.get("outputs")
    if asked is not None and not isinstance(asked, list):
        raise InputError(f"outputs must be a list, got {type(asked).__name__}")
    names = [o.name for o in model.outputs]
    binary = dict.fromkeys(names, default)
    if asked:
        binary = {}
        for i, o in enumerate(asked):
            oname = o.get("name") if isinstance(o, dict) else None
            if oname not in names:
                raise InputError(f"{model.name} has outputs {names}, not {oname!r}")
            binary[oname] = bool(parameters(o, f"outputs[{i}].").get("binary_data", default))
    return req, x, binary


def infer_response(
    model: oip.OipModel, req: dict, arrays: list[np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, list[bytes]]:
    """(JSON head, binary blobs that follow it) of an infer response."""
    outputs, blobs = [], []
    for spec, arr in zip(model.outputs, arrays, strict=True):
        if spec.name not in binary:
            continue
        out: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": list(arr.shape)}
        if binary[spec.name]:
            blob = oip.to_le_bytes(arr)
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = arr.reshape(-1).tolist()
        outputs.append(out)
    resp: dict[str, Any] = {"model_name": model.name, "model_version": oip.VERSION, "outputs": outputs}
    if "id" in req:
        resp["id"] = req["id"]
    return json.dumps(resp).encode(), blobs
