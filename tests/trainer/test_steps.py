"""One training step: the gradients it takes are those of the loss it names, whatever the order
the terms' backward passes run in, and the weight averages follow their formula."""

import contextlib
import copy

import pytest
import torch

from vaegan.config import ModelConfig, RunConfig, TrainConfig
from vaegan.trainer import recipe
from vaegan.trainer.losses import generator_gan_loss, vae_losses
from vaegan.trainer.steps import TrainState, generator_step


def _state(**train) -> tuple[TrainState, TrainConfig, torch.Tensor]:
    cfg, _ = recipe.resolve(
        RunConfig(
            ModelConfig(image_size=16, channels=3, width=8, latent_dim=8), TrainConfig(amp="off", **train)
        ),
        64,
    )
    torch.manual_seed(0)
    st = TrainState.create(cfg.model, cfg.train, torch.device("cpu"), fp16=False)
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).contiguous(memory_format=torch.channels_last)
    return st, cfg.train, x


def _reference_grads(
    models, x: torch.Tensor, stage: str, tc: TrainConfig, seed: int
) -> dict[str, torch.Tensor]:
    """The step's loss written out whole: rec + KL + w * GAN, w from autograd.grad at the decoder's
    last layer, one backward. The same random draws as generator_step (same seed, same order)."""
    m = copy.deepcopy(models)
    m.discriminator.requires_grad_(False)
    torch.manual_seed(seed)
    z_prior = torch.randn(x.shape[0], m.cfg.latent_dim, device=x.device)
    losses, z, _ = vae_losses(
        m,
        x,
        kl_weight=float(tc.kl_weight),
        gamma=tc.gamma,
        pixel_weight=float(tc.pixel_weight),
        use_features=True,
        train_encoder=stage == "joint",
        foreground=float(tc.foreground_weight or 0.0),
        edge=float(tc.edge_weight or 0.0),
        feature_layer=int(tc.feature_layer or 1),
    )
    gan, _ = generator_gan_loss(
        m, z if tc.gan_on_recon else None, z_prior, str(tc.gan_loss), bool(tc.diffaug)
    )
    last = m.decoder.last_layer
    g_rec = torch.autograd.grad(losses["rec"], last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
    w = tc.gan_weight * (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).clamp(max=tc.adaptive_max)
    (losses["total"] + w.detach() * gan).backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("stage", ["adversarial", "joint"])
def test_a_gan_step_takes_the_gradient_of_the_weighted_sum(stage):
    st, tc, x = _state()
    assert tc.adaptive_gan_weight, "the colour recipe balances the GAN term adaptively"
    before = copy.deepcopy(st.models)
    torch.manual_seed(7)
    losses, _ = generator_step(st, x, stage, tc, contextlib.nullcontext, 1, None)
    want = _reference_grads(before, x, stage, tc, seed=7)
    got = {n: p.grad for n, p in st.models.named_parameters() if p.grad is not None}
    assert set(got) == set(want)
    assert any(n.startswith("encoder.") for n in got) == (stage == "joint")
    for name, g in want.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert float(losses["gan_w"]) > 0


def test_a_fixed_gan_weight_takes_the_same_route():
    st, tc, x = _state(adaptive_gan_weight=False)
    torch.manual_seed(3)
    losses, _ = generator_step(st, x, "joint", tc, contextlib.nullcontext, 1, None)
    assert float(losses["gan_w"]) == tc.gan_weight
    assert float(losses["total"].detach()) == pytest.approx(
        sum(
            float(losses[k].detach()) * w
            for k, w in (("kl", tc.kl_weight), ("rec", tc.gamma), ("gan", tc.gan_weight))
        ),
        rel=1e-5,
    )


def test_weight_averages_follow_their_formula():
    st, tc, x = _state()
    decay = float(tc.ema_decay)
    dec = st.models.decoder
    ema = [p.detach().clone() for p in dec.parameters()]
    st.ema.update_parameters(dec)  # the first update copies
    for n in range(1, 4):
        with torch.no_grad():
            for p in dec.parameters():
                p.add_(torch.randn_like(p))
        st.ema.update_parameters(dec)
        d = min(decay, (1.0 + n) / (10.0 + n))
        ema = [e + (p.detach() - e) * (1.0 - d) for e, p in zip(ema, dec.parameters(), strict=True)]
    for e, p in zip(ema, st.ema_decoder.parameters(), strict=True):
        torch.testing.assert_close(p, e)
