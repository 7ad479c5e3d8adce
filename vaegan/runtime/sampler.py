"""Sampler: the runtime API. uint8 NHWC images in and out; numpy and one engine, never torch.

s = Sampler.load("artifacts/digits")            # picks the best usable engine, says why
images = s.sample(64, seed=0)                   # uint8 [64, H, W, C]
mu, logvar = s.encode(images)
s.reconstruct(images); s.interpolate(a, b, steps=8); s.decode(z)
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vaegan.core.errors import ArtifactCorrupt, ArtifactError, ArtifactMissing, BackendUnavailable, InputError
from vaegan.core.manifest import PRECISIONS, Manifest, read_prior, read_verified
from vaegan.core.prior import LatentPrior
from vaegan.runtime.backends import FORMAT_OF, REGISTRY, Runner, load_runner

log = logging.getLogger(__name__)
DEFAULT_MAX_N = 100_000


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _ort_has_gpu() -> bool:
    from vaegan.runtime.backends.ort import GPU_PROVIDERS, available_providers

    return any(p in available_providers() for p in GPU_PROVIDERS)


class Sampler:
    """Encoder and decoder runners for one precision on one backend."""

    def __init__(
        self,
        manifest: Manifest,
        decoder: Runner,
        encoder: Runner | None,
        backend_info: dict[str, Any],
        max_n: int = DEFAULT_MAX_N,
    ):
        self.manifest = manifest
        self.decoder_runner = decoder
        self.encoder_runner = encoder
        self.backend_info = backend_info
        self.latent_dim = manifest.latent_dim
        self.image_shape = manifest.image_shape
        self.max_batch = int(manifest.max_batch)
        self.max_n = max_n
        self.prior: LatentPrior | None = None  # set by load(): the export's fitted prior, if any
        self.art_dir: Path | None = None  # set by load(): the dir it was loaded from

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        art_dir: str | Path,
        backend: str = "auto",
        precision: str = "fp32",
        device: str | None = None,
        threads: int = 0,
        max_n: int = DEFAULT_MAX_N,
    ) -> Sampler:
        """Load an artifact dir. backend: auto | ort | openvino | tensorrt; precision: fp32 | fp16 | int8.

        Every file used is checked against its sha256 in the manifest first.
        """
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if backend != "auto" and backend not in REGISTRY:
            raise InputError(f"backend must be auto or one of {', '.join(REGISTRY)}, got {backend!r}")
        art_dir = Path(art_dir)
        manifest = Manifest.load(art_dir)
        prior = read_prior(art_dir, manifest)  # checked before any engine loads, like every file
        candidates = cls._candidates(manifest, backend, precision)
        reasons = []
        for name, why in candidates:
            dec = manifest.find("decoder", precision, FORMAT_OF[name])
            if dec is None:
                reasons.append(f"{name}: no {precision} {FORMAT_OF[name]} decoder in the manifest")
                continue
            runners: dict[str, Runner] = {}
            try:
                for comp in ("decoder", "encoder"):
                    art = manifest.find(comp, precision, FORMAT_OF[name])
                    if art is None:
                        continue
                    runners[comp] = load_runner(
                        name, read_verified(art_dir, art), art, device, threads, expect=art
                    )
            except (BackendUnavailable, ArtifactError) as e:
                for r in runners.values():  # the decoder loaded and the encoder did not: free it
                    r.close()
                if backend != "auto" or isinstance(e, ArtifactMissing | ArtifactCorrupt):
                    raise  # a corrupted artifact is an error, not a reason to fall back silently
                reasons.append(f"{name}: {e}")
                continue
            except BaseException:
                for r in runners.values():
                    r.close()
                raise
            info = {
                "backend": name,
                "precision": precision,
                "why": why,
                "skipped": reasons,
                "decoder": asdict(runners["decoder"].info),
            }
            if "encoder" in runners:
                info["encoder"] = asdict(runners["encoder"].info)
            info["prior"] = prior.describe() if prior is not None else "N(0, I)"
            sampler = cls(manifest, runners["decoder"], runners.get("encoder"), info, max_n)
            sampler.prior, sampler.art_dir = prior, art_dir
            return sampler
        raise BackendUnavailable(
            f"no usable {precision} decoder in {art_dir} for backend {backend}: "
            + "; ".join(reasons)
            + ". Run `vaegan doctor "
            + str(art_dir)
            + "` for what this machine can run"
        )

    @staticmethod
    def _candidates(manifest: Manifest, backend: str, precision: str) -> list[tuple[str, str]]:
        if backend != "auto":
            return [(backend, "requested")]
        out = []
        if manifest.find("decoder", precision, "tensorrt") and _installed("tensorrt"):
            out.append(("tensorrt", "TensorRT engine present and TensorRT installed"))
        if _installed("onnxruntime") and _ort_has_gpu():
            out.append(("ort", "ONNX Runtime with a GPU execution provider"))
        has_ir = manifest.find("decoder", precision, "openvino") is not None and _installed("openvino")
        # On CPUs OpenVINO runs int8 and half precision about 2x faster than ONNX Runtime, whose
        # fp16 kernels are fp32 underneath; for fp32 ONNX Runtime has the lower batch-1 latency
        # (docs/benchmarks.md).
        # ...unless the export measured that IR losing quality beyond its tolerance.
        q = manifest.quality.get(f"openvino-{precision}", {})
        ov_first = has_ir and precision != "fp32" and q.get("within_tolerance") is not False
        if ov_first:
            out.append(("openvino", f"OpenVINO IR present: the fastest {precision} CPU path"))
        if precision == "fp32":
            out.append(("ort", "ONNX Runtime on the CPU: lowest fp32 latency"))
        elif has_ir and not ov_first:
            out.append(
                (
                    "ort",
                    f"ONNX Runtime on the CPU: the OpenVINO {precision} IR is faster but lost quality at "
                    f"export (FD {q.get('delta_fd', float('nan')):+.2f} over fp32, beyond the tolerance)",
                )
            )
        else:
            out.append(("ort", "ONNX Runtime on the CPU"))
        if has_ir and not ov_first:
            out.append(("openvino", "OpenVINO IR present and OpenVINO installed"))
        return out

    # ------------------------------------------------------------------ validation
    def _check_n(self, n: Any) -> int:
        if isinstance(n, bool) or not isinstance(n, int | np.integer):
            raise InputError(f"n must be an integer, got {type(n).__name__}")
        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        if n > self.max_n:
            raise InputError(f"n={n} is over the limit of {self.max_n} per call: ask in smaller chunks")
        return int(n)

    def check_latents(self, z: Any) -> np.ndarray:
        if (  # the common case, in a few attribute reads: at batch 1 every microsecond here showed
            # up several times over in the engine's next call (docs/benchmarks.md)
            type(z) is np.ndarray
            and z.dtype == np.float32
            and z.ndim == 2
            and z.shape[1] == self.latent_dim
            and 0 < z.shape[0] <= self.max_n
            and z.flags.c_contiguous
            and np.isfinite(z).all()
        ):
            return z
        try:
            z = np.asarray(z)
        except (ValueError, TypeError) as e:  # a ragged nested list, say
            raise InputError(f"latents must be a rectangular [N, {self.latent_dim}] array ({e})") from None
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(
                f"latents must be [N, {self.latent_dim}] (this model's latent dim), got {list(z.shape)}"
            )
        if not np.issubdtype(z.dtype, np.floating):
            raise InputError(f"latents must be floating point, got {z.dtype}")
        if len(z) == 0:
            raise InputError("latents are empty: pass at least one row")
        if len(z) > self.max_n:
            raise InputError(f"at most {self.max_n} latents per call, got {len(z)}")
        with np.errstate(over="ignore"):
            z32 = np.ascontiguousarray(z, dtype=np.float32)
        if not np.isfinite(z32).all():
            raise InputError("latents contain NaN or inf (or values beyond float32): pass finite values")
        return z32

    def check_images(self, images: Any) -> np.ndarray:
        try:
            x = np.asarray(images)
        except (ValueError, TypeError) as e:
            raise InputError(f"images must be a rectangular uint8 [N, H, W, C] array ({e})") from None
        h, w, c = self.image_shape
        if x.ndim == 3:
            x = x[None]
        if x.dtype != np.uint8:
            raise InputError(
                f"images must be uint8 (0..255) NHWC, got {x.dtype}: convert with .astype(np.uint8)"
            )
        if x.ndim != 4 or x.shape[1:] != (h, w, c):
            raise InputError(
                f"images must be [N, {h}, {w}, {c}] uint8 (NHWC, this model's size), got {list(x.shape)}: "
                "resize with vaegan.core.images.load_image"
            )
        if len(x) == 0 or len(x) > self.max_n:
            raise InputError(f"pass between 1 and {self.max_n} images, got {len(x)}")
        return np.ascontiguousarray(x)

    # ------------------------------------------------------------------ API
    def latents(
        self, n: int, seed: int | None = None, temperature: float = 1.0, class_name: str | None = None
    ) -> np.ndarray:
        """The latents `sample` decodes, from the export's fitted prior (a Gaussian mixture over where
        the encoder put the training images, core/prior.py) or N(0, I) without one; temperature scales
        their spread. class_name: one class of a labelled training set (its prior is fitted per class).
        The same seed gives the same latents on every backend."""
        n = self._check_n(n)
        t = None
        if not isinstance(temperature, bool | np.bool_) and isinstance(
            temperature, int | float | np.integer | np.floating
        ):
            try:
                t = float(temperature)
            except OverflowError:  # an int beyond float's range, 10**400 say
                t = None
        if t is None or not np.isfinite(t) or not 0 < t <= 10:
            shown = repr(temperature)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise InputError(f"temperature must be a number in (0, 10], got {shown}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
        rng = np.random.default_rng(seed)
        if class_name is not None:
            if self.prior is None:
                raise InputError(
                    "this export samples N(0, I): it has no prior fitted per class to draw one from"
                )
            try:
                return self.prior.sample(n, rng, t, class_name=str(class_name))
            except ValueError as e:
                raise InputError(str(e)) from None
        if self.prior is not None:
            return self.prior.sample(n, rng, t)
        return rng.standard_normal((n, self.latent_dim), dtype=np.float32) * np.float32(t)

    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> np.ndarray:
        return self.decode(self.latents(n, seed, temperature))

    def decode(self, z: Any) -> np.ndarray:
        """Latents [N, Z] -> uint8 images [N, H, W, C], in chunks of the engine's max batch."""
        z = self.check_latents(z)
        out = np.empty((len(z), *self.image_shape), dtype=np.uint8)
        if len(z) <= self.max_batch:  # whole arrays, not slices: a sliced view cost OpenVINO ~40 us a call
            self.decoder_runner.run_into(z, [out])
            return out
        for i in range(0, len(z), self.max_batch):
            self.decoder_runner.run_into(z[i : i + self.max_batch], [out[i : i + self.max_batch]])
        return out

    def encode(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images [N, H, W, C] -> (mu, logvar), each float32 [N, Z]."""
        if self.encoder_runner is None:
            raise ArtifactError("this artifact dir has no encoder for the chosen backend/precision")
        x = self.check_images(images)
        mu = np.empty((len(x), self.latent_dim), np.float32)
        logvar = np.empty_like(mu)
        for i in range(0, len(x), self.max_batch):
            s = slice(i, i + self.max_batch)
            self.encoder_runner.run_into(x[s], [mu[s], logvar[s]])
        return mu, logvar

    def reconstruct(self, images: Any) -> np.ndarray:
        return self.decode(self.encode(images)[0])

    def interpolate(self, a: Any, b: Any, steps: int = 8) -> np.ndarray:
        """Images along the spherical path between a and b (latents [Z] or uint8 images [H,W,C])."""
        return self.decode(self.interpolation_latents(a, b, steps))

    def interpolation_latents(self, a: Any, b: Any, steps: int = 8) -> np.ndarray:
        """The latents `interpolate` decodes: `steps` points on the spherical path from a to b."""
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or not 2 <= steps <= 1024:
            raise InputError(f"steps must be an integer in [2, 1024], got {steps!r}")
        za, zb = (self._as_latent(v) for v in (a, b))
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float64)[:, None]
        cos = np.clip(np.dot(za, zb) / (np.linalg.norm(za) * np.linalg.norm(zb) + 1e-12), -1.0, 1.0)
        omega = np.arccos(cos)
        if omega < 1e-6:
            z = (1 - t) * za + t * zb
        else:
            z = (np.sin((1 - t) * omega) * za + np.sin(t * omega) * zb) / np.sin(omega)
        return z.astype(np.float32)

    def _as_latent(self, v: Any) -> np.ndarray:
        """One end of an interpolation: one latent [Z] (or [1, Z]) or one image [H, W, C] (or [1, ...])."""
        try:
            v = np.asarray(v)
        except (ValueError, TypeError) as e:
            raise InputError(f"an interpolation end must be one latent or one image ({e})") from None
        if v.dtype == np.uint8:
            if v.ndim == 4 and len(v) != 1:
                raise InputError(
                    f"an interpolation end must be one image [H, W, C], got {len(v)} images {list(v.shape)}"
                )
            return self.encode(v)[0][0].astype(np.float64)
        if v.ndim == 2 and len(v) != 1:
            raise InputError(
                f"an interpolation end must be one latent [{self.latent_dim}], got {len(v)} rows {list(v.shape)}"
            )
        return self.check_latents(v)[0].astype(np.float64)

    def close(self) -> None:
        for r in (self.decoder_runner, self.encoder_runner):
            if r is not None:
                r.close()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
