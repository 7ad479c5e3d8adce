import pytest
import torch
from torch import nn

from vaegan.config import ModelConfig
from vaegan.core.errors import ConfigError
from vaegan.trainer.models import build_models


@pytest.mark.parametrize(("size", "channels"), [(16, 1), (32, 3), (64, 1)])
def test_shapes(size, channels):
    m = build_models(ModelConfig(image_size=size, channels=channels, width=8, latent_dim=5))
    z = torch.randn(3, 5)
    x = m.decoder(z)
    assert x.shape == (3, channels, size, size) and float(x.detach().abs().max()) <= 1
    mu, logvar = m.encoder(x)
    assert mu.shape == logvar.shape == (3, 5)
    logits, feats = m.discriminator(x)
    assert logits.shape == (3,) and feats.shape[0] == 3 and feats.shape[-1] == 4


def test_decoder_is_export_friendly():
    m = build_models(ModelConfig())
    kinds = {type(mod) for mod in m.decoder.modules()}
    assert nn.ConvTranspose2d not in kinds and nn.GroupNorm not in kinds
    assert nn.Upsample in kinds and nn.BatchNorm2d in kinds


def test_discriminator_is_spectrally_normalised():
    m = build_models(ModelConfig())
    convs = [mod for mod in m.discriminator.modules() if isinstance(mod, nn.Conv2d | nn.Linear)]
    assert convs and all(hasattr(mod, "parametrizations") for mod in convs)


@pytest.mark.parametrize("kw", [{"image_size": 20}, {"image_size": 256}, {"latent_dim": 0}, {"channels": 2}])
def test_impossible_configs(kw):
    with pytest.raises(ConfigError):
        build_models(ModelConfig(**kw))


def test_dis_l_features_come_from_the_block_asked_for():
    """feature_layer 1 is D's last conv block (4x4), 2 the one before (8x8); the logits do not change."""
    m = build_models(ModelConfig(image_size=64, channels=3, width=4, latent_dim=4, d_width=4))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    m.eval()  # spectral norm's power iteration steps on every training-mode forward
    (l1, f1), (l2, f2) = m.discriminator(x, 1), m.discriminator(x, 2)
    assert f1.shape[-1] == 4 and f2.shape[-1] == 8 and torch.equal(l1, l2)
    assert m.discriminator(x, 5)[1].shape[-1] == 64  # the first block, at the image's size
    with pytest.raises(ValueError, match="feature_layer"):
        m.discriminator(x, 6)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_upsample_conv_is_upsample_then_conv(bias, memory_format):
    """The low-resolution form the decoder trains with: the same outputs and gradients, edges included."""
    from vaegan.trainer.models import upsample_conv

    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 7).contiguous(memory_format=memory_format)
    conv = nn.Conv2d(5, 6, 3, 1, 1, bias=bias)
    ref = conv(nn.Upsample(scale_factor=2, mode="nearest")(x))
    out = upsample_conv(x, conv.weight, conv.bias)
    assert out.shape == ref.shape == (3, 6, 8, 14) and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)  # oneDNN sums in ISA-dependent orders
    g = torch.randn_like(ref)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    for a, b in zip(
        torch.autograd.grad((out * g).sum(), params),
        torch.autograd.grad((ref * g).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_the_decoder_trains_as_it_samples():
    """Training mode takes the low-resolution path, eval mode (what export traces) the Upsample -> Conv
    graph: with batch norm's batch statistics in both, they compute the same images."""
    m = build_models(ModelConfig(image_size=32, channels=3, width=4, latent_dim=6))
    z = torch.randn(8, 6)
    train_out = m.decoder.train()(z)
    for mod in m.decoder.modules():  # eval mode, but normalising with the batch's statistics
        if isinstance(mod, nn.BatchNorm2d):
            mod.track_running_stats, mod.running_mean, mod.running_var = False, None, None
    torch.testing.assert_close(m.decoder.eval()(z), train_out, rtol=1e-4, atol=1e-4)
