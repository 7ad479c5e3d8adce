"""The Open Inference Protocol over gRPC: KServe v2's GRPCInferenceService (ServerLive, ServerReady,
ModelReady, ServerMetadata, ModelMetadata, ModelInfer), built on the protocol definitions that
tritonclient ships (tritonclient.grpc.service_pb2 / service_pb2_grpc), over the same ServingCore
as the HTTP front-end (server.py). Started by `vaegan serve --grpc-port`."""

from __future__ import annotations

import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vaegan.core.errors import ConfigError, InputError
from vaegan.runtime import oip
from vaegan.runtime.serving import ServingCore, Unauthorized, answer, server_metadata

# protocol datatype -> the field of InferTensorContents that carries it when not sent raw
CONTENTS = {
    "FP32": "fp32_contents",
    "UINT8": "uint_contents",
    "INT8": "int_contents",
    "INT32": "int_contents",
    "FP16": None,
}


def start(core: ServingCore, host: str, port: int, workers: int = 8) -> tuple[Any, int]:
    """Serve the core's models over gRPC on host:port (0: any free port); returns (server, port).

    Under a token, ServerLive, ServerReady and ModelReady stay open (health probes), every other
    call needs `authorization: Bearer TOKEN` metadata, checked before any work on the model name."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    timeout_s = core.cfg.request_timeout_s

    def answered(method: Any) -> Any:
        """The one error path of this protocol: whatever a call raises is answered as
        serving.answer says (the same message and request id as over HTTP), never its own text."""

        @functools.wraps(method)
        def inner(self: Any, request: Any, context: Any) -> Any:
            try:
                return method(self, request, context)
            except Exception as e:  # noqa: BLE001 - every error is a status, never a crash
                a = answer(e, timeout_s)
                if method.__name__ == "ModelInfer":
                    core.count_infer("grpc", request.model_name, a.grpc)
                if a.request_id:
                    context.set_trailing_metadata((("x-request-id", a.request_id),))
                context.abort(getattr(grpc.StatusCode, a.grpc), a.message)

        return inner

    def authorize(context: Any) -> None:
        if not core.authorized(dict(context.invocation_metadata()).get("authorization")):
            raise Unauthorized("send metadata authorization: Bearer <token>")

    class Servicer(pbg.GRPCInferenceServiceServicer):
        @answered
        def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        @answered
        def ServerReady(self, request, context):
            return pb.ServerReadyResponse(ready=core.ready.is_set())

        @answered
        def ModelReady(self, request, context):
            oip.find(core.models, request.name, request.version)
            return pb.ModelReadyResponse(ready=core.ready.is_set())

        @answered
        def ServerMetadata(self, request, context):
            authorize(context)
            md = server_metadata()
            return pb.ServerMetadataResponse(
                name=md["name"], version=md["version"], extensions=md["extensions"]
            )

        @answered
        def ModelMetadata(self, request, context):
            authorize(context)
            md = oip.find(core.models, request.name, request.version).metadata()

            def tensors(specs: list[dict]) -> list[Any]:
                return [pb.ModelMetadataResponse.TensorMetadata(**t) for t in specs]

            return pb.ModelMetadataResponse(
                name=md["name"],
                versions=md["versions"],
                platform=md["platform"],
                inputs=tensors(md["inputs"]),
                outputs=tensors(md["outputs"]),
            )

        @answered
        def RepositoryModelLoad(self, request, context):
            authorize(context)
            oip.find(core.models, request.model_name, "")
            core.reload()
            return pb.RepositoryModelLoadResponse()

        @answered
        def ModelStatistics(self, request, context):
            authorize(context)
            resp = pb.ModelStatisticsResponse()
            for st in core.statistics(request.name):
                m = resp.model_stats.add(
                    name=st["name"],
                    version=st["version"],
                    last_inference=st["last_inference"],
                    inference_count=st["inference_count"],
                    execution_count=st["execution_count"],
                )
                for part, v in st["inference_stats"].items():
                    getattr(m.inference_stats, part).count = v["count"]
                    getattr(m.inference_stats, part).ns = v["ns"]
            return resp

        @answered
        def ModelInfer(self, request, context):
            t0 = time.perf_counter()
            name = request.model_name
            authorize(context)  # before any work on the name
            model = oip.find(core.models, name, request.model_version)
            asked = {o.name for o in request.outputs} or {o.name for o in model.outputs}
            unknown = asked - {o.name for o in model.outputs}
            if unknown:
                raise InputError(f"{name} has no output {sorted(unknown)[0]!r}")
            params = {
                k: getattr(v, v.WhichOneof("parameter_choice") or "", None)
                for k, v in request.parameters.items()
            }
            fut = model.run(_input(model, request), params)
            rows = fut.result(timeout_s)
            resp = pb.ModelInferResponse(model_name=name, model_version=oip.VERSION, id=request.id)
            for spec, arr in zip(model.outputs, model.split(rows), strict=True):
                if spec.name in asked:
                    resp.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(arr.shape))
                    resp.raw_output_contents.append(oip.to_le_bytes(arr))
            core.count_infer("grpc", name, "OK")
            core.stats[model.name].record(t0, fut, time.perf_counter(), len(rows))
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
    if len(request.raw_input_contents) > 1:
        raise InputError(
            f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input: send one"
        )
    if request.raw_input_contents:
        return oip.from_bytes(t.datatype, shape, request.raw_input_contents[0])
    field = CONTENTS.get(t.datatype)
    if field is None:
        raise InputError(f"input {t.name!r}: send {t.datatype} as raw_input_contents")
    return oip.to_array(t.datatype, shape, list(getattr(t.contents, field)))
