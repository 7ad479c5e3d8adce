"""`vaegan.export.export_model` on models unlike vaegan's, and the bad models it refuses."""

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import ROOT, run_cli
from vaegan.core.errors import ExportError
from vaegan.export import export_model
from vaegan.export.conformance import check_file
from vaegan.runtime import Sampler


class GroupNormDecoder(nn.Module):
    """ConvTranspose + GroupNorm + SiLU + sigmoid, 48x40 RGB: nothing like vaegan's decoder."""

    def __init__(self, z: int = 24):
        super().__init__()
        self.fc = nn.Linear(z, 32 * 6 * 5)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.GroupNorm(4, 16), nn.SiLU(),
            nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.GroupNorm(2, 8), nn.SiLU(),
            nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, z):
        return self.up(self.fc(z).view(-1, 32, 6, 5))


class GroupNormEncoder(nn.Module):
    def __init__(self, z: int = 24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 4, 2, 1),
            nn.GroupNorm(2, 8),
            nn.SiLU(),
            nn.Conv2d(8, 16, 4, 2, 1),
            nn.SiLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(16 * 12 * 10, 2 * z)

    def forward(self, x):
        mu, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mu, logvar


def _torch_uint8(decoder, z, lo, hi):
    with torch.no_grad():
        x = decoder(torch.from_numpy(z))
    return ((x - lo) * (255.0 / (hi - lo))).round().clamp(0, 255).permute(0, 2, 3, 1).byte().numpy()


@pytest.fixture(scope="module")
def rgb_export(tmp_path_factory):
    torch.manual_seed(0)
    dec, enc = GroupNormDecoder(), GroupNormEncoder()
    calib = np.random.default_rng(0).integers(0, 256, (64, 48, 40, 3), dtype=np.uint8)
    out = tmp_path_factory.mktemp("byom") / "rgb"
    m = export_model(
        dec, out, latent_dim=24, image_shape=(48, 40, 3), encoder=enc, output_range=(0.0, 1.0),
        calibration=calib, openvino=True, max_batch=16, opt_batch=4, quality_n=200, calib_samples=64,
    )  # fmt: skip
    return out, m, dec


def test_encoder_and_decoder_export_to_every_precision_and_openvino(rgb_export):
    out, m, _ = rgb_export
    kinds = {(a.component, a.precision, a.format) for a in m.artifacts}
    for comp in ("encoder", "decoder"):
        for p in ("fp32", "fp16", "int8"):
            assert {(comp, p, "onnx"), (comp, p, "openvino")} <= kinds
    for a in m.artifacts:
        if a.format == "onnx":
            assert check_file(out / a.path).ok, a.path
    assert m.run["source"] == "user modules" and m.run["modules"]["decoder"]["class"].endswith(
        "GroupNormDecoder"
    )
    assert "step" not in m.run and m.run["quality_space"].startswith("label-free")
    assert m.quality["int8"]["within_tolerance"] in (True, False) and "fd" in m.quality["fp32"]


def test_the_runtime_decodes_within_one_grey_level_of_torch_and_encodes(rgb_export):
    out, _, dec = rgb_export
    with Sampler.load(out) as s:
        z = s.latents(16, seed=0)
        assert np.abs(s.decode(z).astype(int) - _torch_uint8(dec, z, 0.0, 1.0).astype(int)).max() <= 1
        mu, logvar = s.encode(s.decode(z))
        assert mu.shape == logvar.shape == (16, 24)
    r = run_cli("info", str(out))
    assert r.returncode == 0 and "48x40x3 images" in r.stdout and "user modules" in r.stdout


def test_a_decoder_only_model_exports_every_precision_and_openvino(tmp_path):
    torch.manual_seed(1)
    dec = nn.Sequential(
        nn.Linear(6, 20 * 28), nn.Unflatten(1, (1, 20, 28)), nn.Conv2d(1, 1, 3, 1, 1), nn.Tanh()
    )
    calib = np.random.default_rng(1).integers(0, 256, (32, 20, 28, 1), dtype=np.uint8)
    m = export_model(
        dec, tmp_path / "d", latent_dim=6, image_shape=(20, 28, 1), calibration=calib, openvino=True,
        quality_n=50, calib_samples=32,
    )  # fmt: skip
    assert {a.component for a in m.artifacts} == {"decoder"}
    assert {(a.precision, a.format) for a in m.artifacts} == {
        (p, f) for p in ("fp32", "fp16", "int8") for f in ("onnx", "openvino")
    }
    assert all(check_file(tmp_path / "d" / a.path).ok for a in m.artifacts if a.format == "onnx")
    with Sampler.load(tmp_path / "d") as s:
        z = s.latents(4, seed=1)
        assert np.abs(s.decode(z).astype(int) - _torch_uint8(dec, z, -1.0, 1.0).astype(int)).max() <= 1
    with pytest.raises(ExportError, match="int8 needs calibration images"):
        export_model(dec, tmp_path / "e", latent_dim=6, image_shape=(20, 28, 1))
    fp = export_model(
        dec, tmp_path / "f", latent_dim=6, image_shape=(20, 28, 1), precisions=("fp32", "fp16"), quality_n=50
    )
    assert fp.run["quality_space"].startswith("pca") and "fp32 decoder" in fp.run["quality_space"]


class Ragged(nn.Module):
    def __init__(self, bad: str):
        super().__init__()
        self.bad, self.fc = bad, nn.Linear(4, 64)

    def forward(self, z):
        x = self.fc(z).view(-1, 1, 8, 8)
        if self.bad == "shape":
            return x[:, :, :7]
        if self.bad == "range":
            return x * 100
        if self.bad == "op":
            return torch.tanh(x + torch.histc(x, bins=4).sum())  # histc has no ONNX export
        if self.bad == "nan":
            return torch.tanh(x) * float("nan")
        if self.bad == "some nan":  # NaN for the latents whose first value is positive
            return torch.where(z[:, :1, None, None] > 0, torch.log(-x.abs() - 1), torch.tanh(x))
        return torch.tanh(x)


BAD = {
    "shape": ("decoder returns [64, 1, 7, 8]", None),
    "range": ("outside output_range", None),
    "op": ("op aten.histc in module decoder", None),
    "encoder": ("must return (mu, logvar)", nn.Sequential(nn.Flatten(), nn.Linear(64, 4))),
    "nan": ("the decoder returns NaN or inf for 100.00% of its outputs", None),
    "some nan": ("the decoder returns NaN or inf for", None),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_models_are_refused_in_one_line(tmp_path, case, monkeypatch):
    needle, encoder = BAD[case]
    module = tmp_path / "user_models.py"
    module.write_text(
        "import torch\nfrom torch import nn\n"
        f"from tests.export.test_export_model import Ragged\n"
        f"def build():\n    return {'nn.Sequential(nn.Flatten(), nn.Linear(64, 4))' if encoder is not None else 'None'}, "
        f"Ragged({case!r})\n"
    )
    calib = tmp_path / "c.npz"
    np.savez(calib, x=np.zeros((20, 8, 8, 1), np.uint8))
    r = run_cli(
        "export", "--model", "user_models:build", "--latent-dim", "4", "--image-shape", "8,8,1",
        "--calibration", str(calib), "--out", str(tmp_path / "art"), "--precision", "fp32",
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert needle in r.stderr
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize(
    "source, needle",
    [
        ("def build(:\n    pass\n", "user_models does not parse: invalid syntax"),
        (
            "import sys\ndef build():\n    sys.exit(0)\n",
            "user_models:build() called sys.exit(0): nothing was exported",
        ),
        ("import sys\nsys.exit(3)\n", "importing user_models called sys.exit(3)"),
    ],
)
@pytest.mark.reliability("round2", "--model code that does not parse or exits")
def test_model_code_that_does_not_parse_or_exits(tmp_path, source, needle):
    (tmp_path / "user_models.py").write_text(source)
    r = run_cli(
        "export", "--model", "user_models:build", "--latent-dim", "4", "--image-shape", "8,8,1",
        "--out", str(tmp_path / "art"), "--precision", "fp32", env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
    )  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)
    assert needle in r.stderr and not (tmp_path / "art").exists()


@pytest.mark.reliability("round2", "a NaN decoder is refused at export")
def test_a_nan_decoder_is_refused_through_the_api(tmp_path):
    for case in ("nan", "some nan"):
        with pytest.raises(ExportError, match=r"NaN or inf for \d+\.\d\d% of its outputs"):
            export_model(
                Ragged(case), tmp_path / "art", latent_dim=4, image_shape=(8, 8, 1), precisions=["fp32"]
            )
    assert not (tmp_path / "art").exists()


@pytest.mark.reliability("round2", "calibration of any image count")
def test_int8_calibration_takes_any_number_of_images(tmp_path):
    torch.manual_seed(0)
    calib = np.random.default_rng(0).integers(0, 256, (300, 8, 8, 1), dtype=np.uint8)
    m = export_model(
        Ragged("none"), tmp_path / "art", latent_dim=4, image_shape=(8, 8, 1), calibration=calib,
        precisions=["fp32", "int8"], calib_samples=300, quality_n=64,
    )  # fmt: skip
    assert m.find("decoder", "int8", "onnx").notes["calibration"]["samples"] == 300
