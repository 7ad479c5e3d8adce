"""The Open Inference Protocol over gRPC: KServe v2's GRPCInferenceService (ServerLive, ServerReady,
ModelReady, ServerMetadata, ModelMetadata, ModelInfer), built on the protocol definitions that
tritonclient ships (tritonclient.grpc.service_pb2 / service_pb2_grpc), into the same models and
batchers as the HTTP endpoints of server.py. Started by `vaegan serve --grpc-port`."""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from vaegan.core.errors import ConfigError, InputError, Overloaded
from vaegan.runtime import oip
from vaegan.runtime.batcher import BatcherClosed

# protocol datatype -> the field of InferTensorContents that carries it when not sent raw
CONTENTS = {"FP32": "fp32_contents", "UINT8": "uint_contents", "INT8": "int_contents", "FP16": None}


def start(app: Any, host: str, port: int, workers: int = 8, timeout_s: float = 60.0) -> tuple[Any, int]:
    """Serve the app's models over gRPC on host:port (0: any free port); returns (server, port)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    from vaegan.runtime.server import oip_server_metadata

    served: dict[str, oip.OipModel] = app.state.oip
    metrics, ready, token = app.state.metrics, app.state.ready, app.state.token

    def refuse(context: Any, model: str, code: Any, msg: str) -> None:
        metrics["infer"].labels("grpc", model, code.name).inc()
        context.abort(code, msg)

    def authorize(context: Any, model: str) -> None:
        if token is None:
            return
        value = dict(context.invocation_metadata()).get("authorization", "")
        scheme, _, given = value.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            refuse(
                context, model, grpc.StatusCode.UNAUTHENTICATED, "send metadata authorization: Bearer <token>"
            )

    def model_or_abort(context: Any, name: str, version: str) -> oip.OipModel:
        try:
            return oip.find(served, name, version)
        except oip.ModelNotFound as e:
            refuse(context, name, grpc.StatusCode.NOT_FOUND, str(e))
            raise  # not reached: abort raises

    class Servicer(pbg.GRPCInferenceServiceServicer):
        def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=ready.is_set())

        def ModelReady(self, request, context):
            model_or_abort(context, request.name, request.version)
            return pb.ModelReadyResponse(ready=ready.is_set())

        def ServerMetadata(self, request, context):
            md = oip_server_metadata()
            return pb.ServerMetadataResponse(
                name=md["name"], version=md["version"], extensions=md["extensions"]
            )

        def ModelMetadata(self, request, context):
            authorize(context, request.name)
            md = model_or_abort(context, request.name, request.version).metadata()

            def tensors(specs: list[dict]) -> list[Any]:
                return [pb.ModelMetadataResponse.TensorMetadata(**t) for t in specs]

            return pb.ModelMetadataResponse(
                name=md["name"],
                versions=md["versions"],
                platform=md["platform"],
                inputs=tensors(md["inputs"]),
                outputs=tensors(md["outputs"]),
            )

        def ModelInfer(self, request, context):
            name = request.model_name
            authorize(context, name)
            model = model_or_abort(context, name, request.model_version)
            code, msg, rows = None, "", None
            try:
                x = _input(model, request)
                rows = model.run(x).result(timeout_s)
            except (Overloaded, BatcherClosed) as e:
                code, msg = grpc.StatusCode.UNAVAILABLE, str(e)
            except (InputError, ValueError) as e:
                code, msg = grpc.StatusCode.INVALID_ARGUMENT, str(e)
            except FutureTimeout:
                code, msg = grpc.StatusCode.DEADLINE_EXCEEDED, f"request took over {timeout_s:.0f}s"
            if code is not None or rows is None:
                refuse(context, name, code or grpc.StatusCode.INTERNAL, msg)
            asked = {o.name for o in request.outputs} or {o.name for o in model.outputs}
            unknown = asked - {o.name for o in model.outputs}
            if unknown:
                refuse(
                    context,
                    name,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{name} has no output {sorted(unknown)[0]!r}",
                )
            resp = pb.ModelInferResponse(model_name=name, model_version=oip.VERSION, id=request.id)
            for spec, arr in zip(model.outputs, model.split(rows), strict=True):
                if spec.name in asked:
                    resp.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(arr.shape))
                    resp.raw_output_contents.append(
                        np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
                    )
            metrics["infer"].labels("grpc", name, "OK").inc()
            return resp

    server = grpc.server(
        ThreadPoolExecutor(workers, thread_name_prefix="vaegan-grpc"),
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 256 << 20)],
    )
    pbg.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise ConfigError(f"cannot listen for gRPC on {host}:{port}: is the port in use?")
    server.start()
    return server, bound


def _input(model: oip.OipModel, request: Any) -> np.ndarray:
    if len(request.inputs) != 1:
        want = model.inputs[0]
        raise InputError(f"{model.name} takes one input tensor {want.name!r} ({want.datatype} {want.shape})")
    t = request.inputs[0]
    shape = [int(d) for d in t.shape]
    model.check_input(t.name, t.datatype, shape)
    if request.raw_input_contents:
        return oip.from_bytes(t.datatype, shape, request.raw_input_contents[0])
    field = CONTENTS.get(t.datatype)
    if field is None:
        raise InputError(f"input {t.name!r}: send {t.datatype} as raw_input_contents")
    return oip.to_array(t.datatype, shape, list(getattr(t.contents, field)))
