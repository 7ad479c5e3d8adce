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
