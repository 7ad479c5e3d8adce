"""The latent prior samples are drawn from: N(0, I), or a Gaussian mixture fitted to where the
encoder puts the training images.

Why a fitted prior: a VAE's decoder is trained on the encoder's posteriors, and on colour data they
do not fill N(0, I): on letters64 each image's posterior has a spread of about 0.1 around a mean that
varies by about 1.1 per dimension, so most of N(0, I) lies between images, where the decoder draws
blends. Decoding the training set's own posteriors gave 56% confidently named letters against 9% for
N(0, I) samples (docs/experiments/colour.md). Ex-post density estimation (Ghosh et al. 2020, "From
Variational to Deterministic Autoencoders") fits a mixture to the posterior means after training;
the decoder is unchanged, so encode/decode and interpolation keep working in the same latent space.

numpy only: the runtime samples from it on a device without torch or scikit-learn.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaegan.core.errors import ArtifactCorrupt

PRIOR_FILE = "prior.npz"


@dataclass
class LatentPrior:
    """A Gaussian mixture over the latent space: weights [K], means [K, D], Cholesky factors [K, D, D]
    of the components' covariances, and for a labelled data set the class each component was fitted
    to (classes [K], indices into class_names; both None otherwise)."""

    weights: np.ndarray
    means: np.ndarray
    chol: np.ndarray
    classes: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        return int(self.means.shape[0])

    def describe(self) -> str:
        per_class = (
            "" if self.classes is None else f", one mixture per class ({len(np.unique(self.classes))})"
        )
        return f"fitted mixture of {self.components} Gaussians{per_class}"

    def sample(
        self, n: int, rng: np.random.Generator, temperature: float = 1.0, class_name: str | None = None
    ) -> np.ndarray:
        """n latents [n, D] float32: a component by weight, then its Gaussian with the spread scaled by
        temperature (< 1: nearer each component's centre). class_name: only that class's components
        (a prior fitted per class); ValueError naming the classes there are otherwise."""
        p = self.weights
        if class_name is not None:
            if self.classes is None or self.class_names is None:
                raise ValueError("this model's prior was not fitted per class (its data had no labels)")
            if class_name not in self.class_names:
                raise ValueError(f"no class {class_name!r}; the classes are {', '.join(self.class_names)}")
            p = np.where(self.classes == self.class_names.index(class_name), p, 0.0)
            if p.sum() <= 0:  # a class with no training images in the split the prior was fitted on
                raise ValueError(f"class {class_name!r} has no components in this model's prior")
            p = p / p.sum()
        k = rng.choice(self.components, size=n, p=p)
        eps = rng.standard_normal((n, self.latent_dim))
        z = self.means[k] + np.float64(temperature) * np.einsum("nij,nj->ni", self.chol[k], eps)
        return z.astype(np.float32)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {"weights": self.weights, "means": self.means, "chol": self.chol}
        if self.classes is not None and self.class_names is not None:
            arrays |= {"classes": self.classes, "class_names": np.array(self.class_names, dtype=str)}
        np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle
        return buf.getvalue()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        name: str = PRIOR_FILE,
        components: int | None = None,
        latent_dim: int | None = None,
    ) -> LatentPrior:
        """A prior from its .npz bytes, or ArtifactCorrupt naming the field that is wrong. The file is
        untrusted input: its arrays' expanded sizes are bounded (from the manifest's `components` and
        `latent_dim` where given) before any is decompressed, every field is checked for its type,
        shape and range, and so every latent it can give at temperatures up to 10 is finite."""
        k_max = components or MAX_LOADED_COMPONENTS
        d_max = latent_dim or MAX_LOADED_LATENT_DIM
        limits = {
            "weights": 8 * k_max,
            "means": 8 * k_max * d_max,
            "chol": 8 * k_max * d_max * d_max,
            "classes": 8 * k_max,
            "class_names": 4 * MAX_CLASS_NAME * k_max,
        }
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                sizes = {i.filename: i.file_size for i in zf.infolist()}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ArtifactCorrupt(
                f"{name} is not a latent prior ({'empty' if not data else type(e).__name__}): re-export"
            ) from None
        for member, size in sizes.items():
            field_name = member.removesuffix(".npy")
            if field_name not in limits:
                raise ArtifactCorrupt(
                    f"{name} holds {member!r}, which is no field of a latent prior: re-export"
                )
            if size > limits[field_name] + NPY_HEADER:
                raise ArtifactCorrupt(
                    f"{name}: {field_name} expands to {size:,} bytes, more than a prior of {k_max} components "
                    f"over {d_max} latents holds: re-export"
                )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                raw = {f: z[f] for f in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ArtifactCorrupt(f"{name} is not a latent prior ({type(e).__name__}): re-export") from None
        for field_name in ("weights", "means", "chol"):
            if field_name not in raw:
                raise ArtifactCorrupt(f"{name} has no {field_name}: re-export")
        if ("classes" in raw) != ("class_names" in raw):
            raise ArtifactCorrupt(f"{name} has one of classes and class_names without the other: re-export")
        for field_name, kinds in _KINDS.items():
            if field_name in raw and raw[field_name].dtype.kind not in kinds:
                raise ArtifactCorrupt(
                    f"{name}: {field_name} are {raw[field_name].dtype}, not {_KIND_NAMES[kinds]}: re-export"
                )
        p = cls(
            raw["weights"].astype(np.float64),
            raw["means"].astype(np.float64),
            raw["chol"].astype(np.float64),
            raw["classes"].astype(np.int64) if "classes" in raw else None,
            tuple(str(c) for c in raw["class_names"].reshape(-1)) if "class_names" in raw else None,
        )
        p.check(name)
        if components is not None and p.components != components:
            raise ArtifactCorrupt(
                f"{name} has {p.components} components, the manifest says {components}: re-export"
            )
        if latent_dim is not None and p.latent_dim != latent_dim:
            raise ArtifactCorrupt(
                f"{name} is a prior over {p.latent_dim} latents, the model has {latent_dim}: re-export"
            )
        return p

    def check(self, name: str = PRIOR_FILE) -> None:
        """ArtifactCorrupt naming the first field that is not what a fitted prior holds."""

        def bad(what: str) -> ArtifactCorrupt:
            return ArtifactCorrupt(f"{name}: {what}: re-export")

        if (
            self.means.ndim != 2
            or not 0 < self.means.shape[0] <= MAX_LOADED_COMPONENTS
            or self.means.shape[1] < 1
        ):
            raise bad(f"means are {self.means.shape}, not [components <= {MAX_LOADED_COMPONENTS}, latents]")
        k, d = self.means.shape
        if self.weights.shape != (k,):
            raise bad(f"weights are {self.weights.shape}, not [{k}]")
        if self.chol.shape != (k, d, d):
            raise bad(f"chol is {self.chol.shape}, not [{k}, {d}, {d}]")
        for field_name in ("weights", "means", "chol"):
            if not np.isfinite(getattr(self, field_name)).all():
                raise bad(f"{field_name} hold NaN or inf")
        if (self.weights < 0).any() or abs(float(self.weights.sum()) - 1.0) > 1e-6:
            raise bad("weights are not a distribution (non-negative, summing to 1)")
        # a fitted prior's means and spreads are O(1) (posterior means); bounded, every latent drawn
        # from it at a temperature up to 10 is finite in float32 and means something to the decoder
        for field_name in ("means", "chol"):
            if np.abs(getattr(self, field_name)).max() > LATENT_BOUND:
                raise bad(
                    f"{field_name} reach {np.abs(getattr(self, field_name)).max():.3g}, beyond {LATENT_BOUND:g}"
                )
        if np.abs(np.triu(self.chol, 1)).max() > 0 or (np.diagonal(self.chol, axis1=1, axis2=2) <= 0).any():
            raise bad("chol are not Cholesky factors (lower triangular, positive diagonal)")
        if self.classes is None or self.class_names is None:
            return
        if self.classes.shape != (k,):
            raise bad(f"classes are {self.classes.shape}, not [{k}]")
        n = len(self.class_names)
        if not 0 < n <= k or any(not c or len(c) > MAX_CLASS_NAME for c in self.class_names):
            raise bad(f"class_names are {n} names, not 1 to {k} names of 1 to {MAX_CLASS_NAME} characters")
        if (self.classes < 0).any() or (self.classes >= n).any():
            raise bad(f"classes are not indices into its {n} class names")
        mass = np.bincount(self.classes, weights=self.weights, minlength=n)
        listed = np.bincount(self.classes, minlength=n) > 0
        if (listed & (mass <= 0)).any():
            raise bad(
                f"class {self.class_names[int(np.argmax(listed & (mass <= 0)))]!r} has components of weight 0 only"
            )

    def save(self, path: str | Path) -> None:
        from vaegan.core.io import write_bytes

        write_bytes(path, self.to_bytes())


def fit_prior(
    mu: np.ndarray,
    seed: int = 0,
    components: int | None = None,
    labels: np.ndarray | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> LatentPrior:
    """A full-covariance Gaussian mixture fitted to posterior means [N, D] (scikit-learn), about
    IMAGES_PER_COMPONENT images a component: more components follow the posterior's shape closer
    (measured on letters64: 32 components 24% confident, 128 34%, 256 46%, N(0, I) 9%), and samples
    stay further from their nearest training image than held-out real images are (copy ratio 1.2-1.4).

    labels [N] (a labelled data set, indices into class_names): one mixture per class, weighted by the
    class's share, so `vaegan sample --class NAME` can draw one class. Measured
    on letters64, same decoder: 57% confident, class KL 0.058, every letter present, against 46%,
    0.110 and one letter missing for one mixture of as many components: a component fitted across
    classes puts mass between two letters, where the decoder draws blends."""
    if labels is None:
        return _fit_mixture(mu, seed, components or _components(len(mu), MAX_COMPONENTS))
    labels = np.asarray(labels)
    names = (
        tuple(class_names) if class_names is not None else tuple(str(c) for c in range(int(labels.max()) + 1))
    )
    parts = []
    for c in np.unique(labels):
        sel = mu[labels == c]
        p = _fit_mixture(sel, seed, components or _components(len(sel), MAX_COMPONENTS_PER_CLASS))
        parts.append((p, len(sel) / len(mu), int(c)))
    return LatentPrior(
        np.concatenate([p.weights * share for p, share, _ in parts]),
        np.concatenate([p.means for p, _, _ in parts]),
        np.concatenate([p.chol for p, _, _ in parts]),
        np.concatenate([np.full(p.components, c, np.int64) for p, _, c in parts]),
        names,
    )


# What a prior file may hold, checked before it is expanded (from_bytes): vaegan fits at most 256
# components (64 a class); a model has at most 4096 latents (ModelConfig)
MAX_LOADED_COMPONENTS, MAX_LOADED_LATENT_DIM, MAX_CLASS_NAME = 4096, 4096, 256
NPY_HEADER = 1024  # .npy's header, padded to 64 bytes (128 in practice): room to spare
LATENT_BOUND = 1e3
_KINDS = {"weights": "f", "means": "f", "chol": "f", "classes": "iu", "class_names": "U"}
_KIND_NAMES = {"f": "real floats", "iu": "integers", "U": "strings"}

IMAGES_PER_COMPONENT = 10
MAX_COMPONENTS, MAX_COMPONENTS_PER_CLASS = 256, 64
# a random subset of at most this many images a component, and this many in all: a large data set's
# fit stays seconds (measured: 50,000 images, 256 components took 74 s with 20,000 points)
FIT_POINTS_PER_COMPONENT, MAX_FIT_POINTS = 20, 5_000


def _components(n: int, cap: int) -> int:
    return int(np.clip(n // IMAGES_PER_COMPONENT, 1, cap))


def _fit_mixture(mu: np.ndarray, seed: int, k: int) -> LatentPrior:
    from sklearn.mixture import GaussianMixture

    keep = min(MAX_FIT_POINTS, FIT_POINTS_PER_COMPONENT * k)
    if len(mu) > keep:
        mu = mu[np.random.default_rng(seed).choice(len(mu), keep, replace=False)]
    k = min(k, len(mu))
    gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed, max_iter=100)
    gm.fit(mu.astype(np.float64))
    chol = np.linalg.cholesky(gm.covariances_)
    w = gm.weights_ / gm.weights_.sum()
    return LatentPrior(w, gm.means_, chol)
