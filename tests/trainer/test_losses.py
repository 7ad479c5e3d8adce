"""Who learns from what: the routing rules of Larsen et al.'s VAE-GAN."""

import torch

from vaegan.config import ModelConfig
from vaegan.trainer.losses import diff_augment, discriminator_loss, generator_gan_loss, vae_losses
from vaegan.trainer.models import build_models


def _setup():
    torch.manual_seed(0)
    m = build_models(ModelConfig(image_size=16, width=8, latent_dim=8))
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    return m, x


def _grad_norm(module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_gan_loss_gives_no_gradient_to_the_encoder():
    m, x = _setup()
    _, z, _ = vae_losses(m, x, kl_weight=1, gamma=1, pixel_weight=1, use_features=True, train_encoder=True)
    gan, _ = generator_gan_loss(m, z, torch.randn(6, 8), "hinge", augment=True)
    gan.backward()
    assert _grad_norm(m.decoder) > 0
    assert _grad_norm(m.encoder) == 0.0


def test_reconstruction_loss_gives_no_gradient_to_the_discriminator():
    m, x = _setup()
    m.discriminator.requires_grad_(False)  # as the training loop does for the generator step
    losses, _, _ = vae_losses(
        m, x, kl_weight=1, gamma=1, pixel_weight=1, use_features=True, train_encoder=True
    )
    losses["rec"].backward()
    assert _grad_norm(m.encoder) > 0 and _grad_norm(m.decoder) > 0
    assert all(p.grad is None for p in m.discriminator.parameters())


def test_discriminator_loss_trains_only_the_discriminator():
    m, x = _setup()
    fake = m.decoder(torch.randn(6, 8))
    discriminator_loss(m, x, fake, "hinge", augment=True, r1_gamma=1.0)[0].backward()
    assert _grad_norm(m.discriminator) > 0
    assert _grad_norm(m.decoder) == 0.0 and _grad_norm(m.encoder) == 0.0


def test_gamma_weights_decoder_but_not_encoder():
    """Encoder gradient of the reconstruction term is the same for any gamma; the decoder's scales."""
    grads = {}
    for gamma in (1.0, 4.0):
        m, x = _setup()
        torch.manual_seed(1)
        losses, _, _ = vae_losses(
            m, x, kl_weight=0, gamma=gamma, pixel_weight=1, use_features=False, train_encoder=True
        )
        losses["total"].backward()
        grads[gamma] = (_grad_norm(m.encoder), _grad_norm(m.decoder))
    assert abs(grads[4.0][0] - grads[1.0][0]) < 1e-4 * grads[1.0][0]
    assert abs(grads[4.0][1] - 4 * grads[1.0][1]) < 1e-3 * grads[4.0][1]


def test_diff_augment_keeps_shape_and_gradient():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_foreground_weights_favour_the_strokes_and_keep_the_mean():
    from vaegan.trainer.losses import foreground_weights

    x = torch.full((2, 3, 16, 16), -0.8)  # a dark background
    x[:, :, 6:10, 4:12] = torch.tensor([0.9, -0.2, 0.5])[:, None, None]  # a coloured stroke
    w = foreground_weights(x, 4.0)
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.ones(2))
    assert float(w[0, 0, 8, 8]) > 3 * float(w[0, 0, 0, 0])
    assert torch.equal(foreground_weights(torch.zeros(1, 3, 8, 8), 4.0), torch.ones(1, 1, 8, 8))


def test_edge_error_costs_texture_on_a_flat_background_not_a_colour_shift():
    from vaegan.trainer.losses import edge_error

    torch.manual_seed(0)
    x = torch.full((2, 3, 32, 32), -0.6)  # a flat background
    x[:, :, 8:24, 14:18] = 0.7  # a stroke
    texture = x + 0.05 * torch.randn_like(x)  # a faint mottle, as a decoder paints on flat regions
    shifted = x + 0.05  # the same squared pixel error as a uniform colour shift
    pixel = lambda y: (y - x).pow(2).flatten(1).mean(1)  # noqa: E731
    assert torch.allclose(pixel(texture), pixel(shifted), rtol=0.1)
    assert torch.allclose(edge_error(shifted, x), torch.zeros(2), atol=1e-6)
    ratio = edge_error(texture, x) / pixel(texture)
    assert bool((ratio > 3.5).all() and (ratio < 4.5).all())  # two directions, each twice the variance
    assert float(edge_error(x, x).abs().max()) == 0.0
