"""The same artifacts, decoded and encoded here and on another machine, compared case by case.

    python scripts/arm64/parity.py ART --write ref.npz          # on the x86 machine that exported ART
    python scripts/arm64/parity.py ART --check ref.npz          # on the aarch64 one (exit 1 on a miss)
    python scripts/arm64/parity.py ART --check ref.npz --perturb int8-decoder   # shows a miss once

Cases: the decoder's images of 64 seeded latents and the encoder's mu of 64 images, at every ONNX
precision the manifest has, on ONNX Runtime's CPU runner (and OpenVINO's where it is installed on
both sides). Tolerances, from the first measurement on emulated aarch64 against x86: fp32 images
within 1 grey level, fp16 within 2 (and at most 0.1% of pixels more than 1 off), int8 bit-exact
(integer arithmetic has one right answer); mu within 1e-4 (fp32), 1e-2 (fp16), exactly (int8).
torch-free: it runs in the runtime's venv on the device.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from vaegan.core.errors import BackendUnavailable  # noqa: E402
from vaegan.core.manifest import Manifest  # noqa: E402
from vaegan.runtime import Sampler  # noqa: E402

# precision -> (max grey levels, share of pixels allowed more than 1 level off, max |mu| difference)
TOLERANCE = {"fp32": (1, 1.0, 1e-4), "fp16": (2, 0.001, 1e-2), "int8": (0, 0.0, 0.0)}
N = 64


def measure(art: Path, backends: list[str]) -> dict[str, np.ndarray]:
    m = Manifest.load(art)
    z = np.random.default_rng(0).standard_normal((N, m.latent_dim)).astype(np.float32)
    images = None
    out: dict[str, np.ndarray] = {}
    for backend in backends:
        for p in TOLERANCE:
            if not any(a.precision == p for a in m.artifacts):
                continue
            try:
                s = Sampler.load(art, backend=backend, precision=p)
            except BackendUnavailable as e:
                print(f"skip {backend} {p}: {e}")
                continue
            with s:
                dec = s.decode(z)
                if images is None:  # the encoder's inputs: the fp32 decoder's images, the same everywhere
                    images = dec.copy()
                    out["inputs"] = images
                out[f"{backend}-{p}-decoder"] = dec
                if s.encoder_runner is not None:
                    out[f"{backend}-{p}-encoder"] = s.encode(images)[0]
    return out


def check(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> list[str]:
    """One line per case compared; the ones beyond tolerance start with FAIL."""
    lines = []
    for key, want in ref.items():
        if key == "inputs" or key not in got:
            continue
        _, p, comp = key.rsplit("-", 2)
        levels, share, mu_tol = TOLERANCE[p]
        have = got[key]
        if comp == "decoder":
            d = np.abs(have.astype(np.int16) - want.astype(np.int16))
            off = float((d > 1).mean())
            ok = int(d.max()) <= levels and off <= share
            lines.append(
                f"{'ok  ' if ok else 'FAIL'} {key}: max {int(d.max())} grey levels (limit {levels}), "
                f"{100 * off:.3f}% of pixels more than 1 off (limit {100 * share:g}%)"
            )
        else:
            d = float(np.abs(have - want).max())
            ok = d <= mu_tol
            lines.append(f"{'ok  ' if ok else 'FAIL'} {key}: max |mu difference| {d:.3g} (limit {mu_tol:g})")
    missing = [k for k in ref if k != "inputs" and k not in got]
    lines += [f"skip {k}: not measured here (engine not installed)" for k in missing]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("art", type=Path)
    ap.add_argument("--write", type=Path)
    ap.add_argument("--check", type=Path)
    ap.add_argument(
        "--perturb", default=None, help="e.g. int8-decoder: alter that expected output by one level"
    )
    ap.add_argument("--backends", default="ort,openvino")
    a = ap.parse_args()
    got = measure(a.art, a.backends.split(","))
    if a.write:
        np.savez(a.write, **got)
        print(f"wrote {len(got) - 1} cases -> {a.write}")
        return 0
    if not a.check:
        ap.error("pass --write or --check")
    with np.load(a.check) as f:
        ref = {k: f[k].copy() for k in f.files}
    if a.perturb:
        key = next(k for k in ref if k.endswith(a.perturb))
        flat = ref[key].reshape(-1)  # a view: one expected value moves
        if flat.dtype == np.uint8:
            flat[0] = flat[0] + 3 if flat[0] < 128 else flat[0] - 3
        else:
            flat[0] += 0.05
        print(f"perturbed the expected {key} (one value) to show a miss")
    lines = check(got, ref)
    print("\n".join(lines))
    failed = [ln for ln in lines if ln.startswith("FAIL")]
    if failed:
        print(
            f"parity: {len(failed)} case(s) beyond tolerance: "
            + "; ".join(ln.split(":")[0][5:] for ln in failed)
        )
        return 1
    print(f"parity: {sum(ln.startswith('ok') for ln in lines)} cases within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
