"""The prior is untrusted input (third attack round, issue 29). Each bad prior.npz is re-signed (its
sha256 updated in manifest.json, as an attacker who can write the dir would) and must be refused at
load, naming the file and the field: by `Sampler.load`, `vaegan sample`, and `vaegan doctor` (the
deployment gate, which must fail where `serve` would); `vaegan info` must not describe it as a prior."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from vaegan.core.errors import ArtifactError, InputError
from vaegan.core.prior import LatentPrior


def _arrays(art) -> dict[str, np.ndarray]:
    p = LatentPrior.from_bytes((art / "prior.npz").read_bytes())
    return {"weights": p.weights, "means": p.means, "chol": p.chol, "classes": p.classes,
            "class_names": np.array(p.class_names)}  # fmt: skip


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _bomb(arrays: dict) -> bytes:
    """A prior whose chol.npy is 200 MB of zeros, compressed to about 200 KB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in ("weights", "means"):
            zf.writestr(f"{k}.npy", _npy(arrays[k]))
        with zf.open("chol.npy", "w", force_zip64=True) as f:
            header = _npy(np.zeros((50_000, 32, 32)))[:128]  # the header of a large array
            f.write(header)
            block = bytes(1 << 20)
            for _ in range(200):
                f.write(block)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _with(arrays, **changes):
    a = {k: v for k, v in {**arrays, **changes}.items() if v is not None}
    return _npz(**a)


def _cases(a: dict) -> dict[str, tuple[bytes, dict, str]]:
    """name -> (prior bytes, manifest edits, what the refusal must say)."""
    k, d = a["means"].shape
    zero_class = a["weights"].copy()
    zero_class[a["classes"] == 0] = 0.0
    zero_class /= zero_class.sum()
    many = 20_000
    return {
        "0-byte file": (b"", {}, "empty"),
        "not an npz": (b"PK\x03\x04 not a zip", {}, "not a latent prior"),
        "NaN means": (_with(a, means=a["means"] * np.nan), {}, "means hold NaN"),
        "negative weights": (_with(a, weights=-a["weights"]), {}, "weights are not a distribution"),
        "missing chol": (_with(a, chol=None), {}, "has no chol"),
        "pickled object array": (
            _with(a, class_names=np.array(list(a["class_names"]), dtype=object)),
            {},
            "not a latent prior",
        ),
        "wrong latent size": (_with(a, means=a["means"][:, :-1], chol=a["chol"][:, :-1, :-1]), {}, "latents"),
        "means of 1e300": (_with(a, means=a["means"] * 0 + 1e300), {}, "means reach"),
        "Cholesky factors of 1e200": (_with(a, chol=a["chol"] * 1e200), {}, "chol reach"),
        "a class with weights all zero": (_with(a, weights=zero_class), {}, "weight 0 only"),
        "complex means": (_with(a, means=(a["means"] + 1j).astype(np.complex64)), {}, "complex64"),
        "an array that expands to 200 MB": (_bomb(a), {}, "expands to"),
        "20,000 components": (
            _with(
                a,
                weights=np.full(many, 1 / many),
                means=np.zeros((many, d)),
                chol=np.broadcast_to(np.eye(d), (many, d, d)).copy(),
                classes=np.zeros(many, np.int64),
            ),
            {"components": many},
            "components",
        ),  # fmt: skip
        "manifest components 3": (_npz(**a), {"components": 3}, "for 3 components"),
        "manifest components 200": (_npz(**a), {"components": 200}, f"{k} components, the manifest says 200"),
        "schema_version 1 with a prior": (_npz(**a), {"schema_version": 1}, "schema 2"),
        "a file not re-signed": (b"x" + _npz(**a)[1:], {"resign": False}, "sha256"),
        "unknown member": (_npz(**a, extra=np.zeros(3)), {}, "no field of a latent prior"),
    }


def _plant(art, data: bytes, edits: dict) -> None:
    (art / "prior.npz").write_bytes(data)
    m = json.loads((art / "manifest.json").read_text())
    if edits.pop("resign", True):
        m["prior"]["sha256"] = hashlib.sha256(data).hexdigest()
    if "components" in edits:
        m["prior"]["components"] = edits.pop("components")
    m.update(edits)
    (art / "manifest.json").write_text(json.dumps(m))


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "vaegan", *args], capture_output=True, text=True, timeout=120
    )


CASES = [
    "0-byte file", "not an npz", "NaN means", "negative weights", "missing chol", "pickled object array",
    "wrong latent size", "means of 1e300", "Cholesky factors of 1e200", "a class with weights all zero",
    "complex means", "an array that expands to 200 MB", "20,000 components", "manifest components 3",
    "manifest components 200",
    "schema_version 1 with a prior", "a file not re-signed", "unknown member",
]  # fmt: skip


@pytest.mark.reliability("round3", "a bad prior.npz refused by Sampler.load, sample, doctor and info")
@pytest.mark.parametrize("case", CASES)
def test_a_bad_prior_is_refused_everywhere(art_copy, case):
    from vaegan.runtime import Sampler

    data, edits, says = _cases(_arrays(art_copy))[case]
    _plant(art_copy, data, dict(edits))
    with pytest.raises(ArtifactError, match=says) as e:
        Sampler.load(art_copy, backend="ort")
    assert "prior" in str(e.value) or "manifest" in str(e.value)
    r = _cli("sample", str(art_copy), "-n", "2", "--out", str(art_copy / "s.png"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and says in r.stderr, r.stderr
    assert not (art_copy / "s.png").exists()
    r = _cli("doctor", str(art_copy))
    assert r.returncode != 0 and "Usable here" not in r.stdout, r.stdout
    said = r.stdout + r.stderr
    assert says in said and "prior" in said, said
    r = _cli("info", str(art_copy))
    assert "Gaussians" not in r.stdout, r.stdout


def test_the_size_is_bounded_before_expanding(art_copy):
    import tracemalloc

    data, _, _ = _cases(_arrays(art_copy))["an array that expands to 200 MB"]
    assert len(data) < 2_000_000
    tracemalloc.start()
    with pytest.raises(ArtifactError, match="expands to"):
        LatentPrior.from_bytes(data, components=158, latent_dim=8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000  # never expanded


@pytest.mark.reliability("round3", "sampling a class with no components")
def test_a_class_with_no_components_is_an_input_error(art_copy):
    """A class of the data that the prior has no component of (no training image of it in the
    split): `--class` answers which, not numpy's "Probabilities contain NaN"."""
    from vaegan.runtime import Sampler

    a = _arrays(art_copy)
    keep = a["classes"] != 3
    w = a["weights"][keep] / a["weights"][keep].sum()
    _plant(art_copy, _with(a, weights=w, means=a["means"][keep], chol=a["chol"][keep],
                           classes=a["classes"][keep]), {"components": int(keep.sum())})  # fmt: skip
    s = Sampler.load(art_copy, backend="ort")
    with pytest.raises(InputError, match="class '3' has no components"):
        s.latents(2, seed=0, class_name="3")
    assert s.latents(2, seed=0, class_name="4").shape == (2, 8)
    s.close()
    r = _cli("sample", str(art_copy), "-n", "2", "--class", "3", "--out", str(art_copy / "s.png"))
    assert r.returncode == 2 and "no components" in r.stderr and "NaN" not in r.stderr, r.stderr
