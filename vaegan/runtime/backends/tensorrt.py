"""TensorRT engines with cuda-python (no pycuda, no torch): preallocated device buffers for the
profile's max batch, pinned host buffers, one stream, execute_async_v3.

Written to TensorRT's documented Python API shared by TensorRT 10 and 11 (named tensors,
set_input_shape, set_tensor_address, execute_async_v3).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from vaegan.core.errors import ArtifactError, BackendUnavailable
from vaegan.core.manifest import Verified
from vaegan.runtime.backends import Runner, RunnerInfo


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.8
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 12.6 (JetPack 6's CUDA)
        except ImportError as e:
            raise BackendUnavailable(
                "TensorRT engines need cuda-python: pip install 'cuda-python>=12.6,<13' on JetPack 6 "
                "(CUDA 12.6), or the cuda-python major that matches the driver's CUDA elsewhere "
                "(docs/deploying.md)"
            ) from e
    return cudart


NO_DRIVER = (
    "no NVIDIA driver here ({why}): TensorRT engines need an NVIDIA GPU with its driver (nvidia-smi "
    "lists it; on a Jetson, JetPack 6 brings it); CPU backends still run"
)


def _call(fn, *args):
    """One cuda-python runtime call as (error code, values...), with every way it reports a missing
    driver turned into BackendUnavailable.

    cuda-python 12.6 raises RuntimeError("Failed to dlopen libcuda.so.1") from cudaGetDeviceCount and
    RuntimeError('Function "cuDriverGetVersion" not found') from cudaDriverGetVersion when there is no
    driver; 13.x returns cudaErrorInsufficientDriver (35) or cudaErrorNoDevice (100) instead. Both were
    observed on a machine with no NVIDIA driver (tests/runtime/test_cuda_python.py runs them there).
    """
    try:
        result = fn(*args)
    except RuntimeError as e:  # cuda-python's lazy loader: no libcuda.so.1 or an old one
        raise BackendUnavailable(NO_DRIVER.format(why=e)) from e
    return result if isinstance(result, tuple) else (result,)


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else rest


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"


def cuda_versions() -> dict:
    """CUDA driver and runtime versions as cuda-python sees them, e.g. {"driver": "12.6", "runtime":
    "12.6", "mismatch": ""}. A driver older than the runtime cuda-python brings cannot run it
    (CUDA's minor-version compatibility holds within one major only), which is what happens when pip
    resolves cuda-python 13 on JetPack 6's CUDA 12.6 driver."""
    cudart = _cudart()
    _, runtime = _call(cudart.cudaRuntimeGetVersion)
    try:
        err, driver = _call(cudart.cudaDriverGetVersion)
        driver = int(driver or 0) if int(err) == 0 else 0
    except BackendUnavailable:
        driver = 0
    runtime = int(runtime or 0)
    mismatch = ""
    if not driver:
        mismatch = "no NVIDIA driver found: install it (nvidia-smi lists the GPU) to use TensorRT or CUDA"
    elif driver // 1000 < runtime // 1000:
        mismatch = (
            f"the driver supports CUDA {_version(driver)} but cuda-python brings CUDA {_version(runtime)}: "
            f"pip install 'cuda-python>={driver // 1000},<{driver // 1000 + 1}' (or update the driver)"
        )
    return {"driver": _version(driver), "runtime": _version(runtime), "mismatch": mismatch}


def gpu_tag() -> dict:
    """Name and compute capability of GPU 0, through cuda-python's runtime API."""
    cudart = _cudart()
    err, *count = _call(cudart.cudaGetDeviceCount)
    if int(err) != 0 or not count or not count[0]:
        name = getattr(err, "name", str(err))
        if name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice") or int(err) in (35, 100):
            raise BackendUnavailable(NO_DRIVER.format(why=name))
        raise BackendUnavailable(
            f"no CUDA GPU is visible ({name}): check CUDA_VISIBLE_DEVICES and nvidia-smi; TensorRT engines "
            "are built and run on the GPU itself"
        )
    prop = _check(cudart.cudaGetDeviceProperties(0))
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu": name.strip("\x00 "), "compute_capability": f"{prop.major}.{prop.minor}"}


def engine_mismatch(tags: dict) -> str | None:
    """Why an engine built with `tags` cannot run here, or None. Used by the runtime and `vaegan doctor`."""
    try:
        import tensorrt as trt
    except ImportError:
        return "TensorRT is not installed here"
    if tags.get("tensorrt") != trt.__version__:
        return f"built with TensorRT {tags.get('tensorrt')}, this machine has {trt.__version__}"
    try:
        here = gpu_tag()
    except BackendUnavailable as e:
        return str(e)
    if tags.get("gpu") != here["gpu"] or tags.get("compute_capability") != here["compute_capability"]:
        return (
            f"built for {tags.get('gpu')} (sm {tags.get('compute_capability')}), this machine has "
            f"{here['gpu']} (sm {here['compute_capability']})"
        )
    return None


class TensorRTRunner(Runner):
    def __init__(self, source: Verified, artifact, device: str | None, threads: int = 0):
        path = source.path
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendUnavailable(
                "TensorRT is not installed: use JetPack 6's TensorRT (a venv made with --system-site-packages), "
                "or pip install tensorrt-cu12 / tensorrt-cu13 to match the driver (docs/deploying.md)"
            ) from e
        why = engine_mismatch(artifact.notes.get("engine", {}))
        if why:
            raise ArtifactError(f"{path.name} {why}: rebuild it on this device with `vaegan engines ART_DIR`")
        self.cudart = cudart = _cudart()
        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(source.data)
        if self.engine is None:
            raise ArtifactError(
                f"TensorRT could not deserialize {path}: rebuild it on this device with `vaegan engines ART_DIR`"
            )
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self._lock = threading.Lock()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = [n for n in names if n != self.input_name]
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        specs = {
            n: (
                n,
                tuple(int(d) if d >= 0 else None for d in tuple(self.engine.get_tensor_shape(n))[1:]),
                np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))).name,
            )
            for n in names
        }
        self.graph_inputs = [specs[self.input_name]]
        self.graph_outputs = [specs[n] for n in self.output_names]
        self.buffers: dict[str, tuple[int, np.ndarray]] = {}
        for n in names:  # device buffer + pinned host mirror, sized for the max batch
            shape = (self.max_batch, *tuple(self.engine.get_tensor_shape(n))[1:])
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            dev = _check(cudart.cudaMalloc(nbytes))
            host_ptr = _check(cudart.cudaMallocHost(nbytes))
            host = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(int(host_ptr)))
            self.buffers[n] = (int(dev), host.view(dtype).reshape(shape))
            self.context.set_tensor_address(n, int(dev))
        self.info = RunnerInfo(
            "tensorrt",
            artifact.notes.get("engine", {}).get("gpu", "cuda"),
            artifact.precision,
            artifact.path,
            {"tensorrt": trt.__version__, "max_batch": self.max_batch},
        )

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        n = len(x)
        if n > self.max_batch:
            raise ValueError(f"batch {n} exceeds the engine's max batch {self.max_batch}")
        with self._lock:  # one context, one set of device buffers: one call at a time
            return self._run(x, n)

    def _run(self, x: np.ndarray, n: int) -> list[np.ndarray]:
        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        dev_in, host_in = self.buffers[self.input_name]
        host_in[:n] = x
        _check(
            cudart.cudaMemcpyAsync(
                dev_in, host_in.ctypes.data, host_in[:n].nbytes, kind.cudaMemcpyHostToDevice, self.stream
            )
        )
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execution failed")
        outs = []
        for name in self.output_names:
            dev, host = self.buffers[name]
            _check(
                cudart.cudaMemcpyAsync(
                    host.ctypes.data, dev, host[:n].nbytes, kind.cudaMemcpyDeviceToHost, self.stream
                )
            )
            outs.append(host[:n])
        _check(cudart.cudaStreamSynchronize(self.stream))
        return [o.copy() for o in outs]

    def close(self) -> None:
        for dev, host in self.buffers.values():
            self.cudart.cudaFree(dev)
            self.cudart.cudaFreeHost(host.ctypes.data)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
