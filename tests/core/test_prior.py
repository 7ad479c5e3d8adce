"""The latent prior samples are drawn from: a Gaussian mixture, numpy only, checked when read."""

import numpy as np
import pytest

from vaegan.core.errors import ArtifactCorrupt
from vaegan.core.prior import LatentPrior


def _two_blobs() -> LatentPrior:
    means = np.array([[5.0, 0.0], [-5.0, 0.0]])
    chol = np.stack([np.eye(2) * 0.1, np.eye(2) * 0.2])
    return LatentPrior(np.array([0.25, 0.75]), means, chol)


def test_samples_follow_the_weights_and_temperature_narrows_each_component():
    p = _two_blobs()
    z = p.sample(4000, np.random.default_rng(0))
    assert z.dtype == np.float32 and z.shape == (4000, 2)
    right = z[:, 0] > 0
    assert abs(right.mean() - 0.25) < 0.03  # component weights
    assert abs(z[right, 0].std() - 0.1) < 0.01 and abs(z[~right, 0].std() - 0.2) < 0.02
    cold = p.sample(4000, np.random.default_rng(0), temperature=0.5)
    assert abs(cold[cold[:, 0] > 0, 0].std() - 0.05) < 0.005
    assert np.array_equal(p.sample(8, np.random.default_rng(3)), p.sample(8, np.random.default_rng(3)))


def test_a_prior_round_trips_and_a_damaged_one_is_refused():
    p = _two_blobs()
    q = LatentPrior.from_bytes(p.to_bytes())
    assert np.array_equal(q.means, p.means) and np.array_equal(q.chol, p.chol)
    with pytest.raises(ArtifactCorrupt, match="not a latent prior"):
        LatentPrior.from_bytes(b"PK\x03\x04 not really")
    bad = LatentPrior(np.array([0.5, 0.6]), p.means, p.chol)  # weights do not sum to 1
    with pytest.raises(ArtifactCorrupt, match="weights are not a distribution"):
        LatentPrior.from_bytes(bad.to_bytes())
    nan = LatentPrior(p.weights, p.means * np.nan, p.chol)
    with pytest.raises(ArtifactCorrupt, match="means hold NaN or inf"):
        LatentPrior.from_bytes(nan.to_bytes())


def test_the_fixture_samples_from_its_fitted_prior_and_refuses_a_swapped_one(art_copy):
    from vaegan.core.manifest import Manifest, read_prior
    from vaegan.runtime import Sampler

    m = Manifest.load(art_copy)
    assert m.prior and m.prior["path"] == "prior.npz"
    prior = read_prior(art_copy, m)
    with Sampler.load(art_copy, backend="ort") as s:
        assert s.backend_info["prior"].startswith("fitted mixture")
        z = s.latents(16, seed=5)
        assert np.array_equal(z, prior.sample(16, np.random.default_rng(5)))
        # not N(0, I): the mixture's own draw
        assert not np.array_equal(
            z, np.random.default_rng(5).standard_normal((16, s.latent_dim), dtype=np.float32)
        )
    (art_copy / "prior.npz").write_bytes(_two_blobs().to_bytes())
    with pytest.raises(ArtifactCorrupt, match="sha256"):
        Sampler.load(art_copy, backend="ort")


def test_a_labelled_fit_is_one_mixture_per_class_weighted_by_its_share():
    pytest.importorskip(
        "sklearn", reason="fitting needs scikit-learn (the trainer's); the runtime only samples"
    )
    from vaegan.core.prior import fit_prior

    rng = np.random.default_rng(0)
    # two classes, each two clusters; class 1 has three times the images
    centres = {0: [(-6, -6), (-6, 6)], 1: [(6, -6), (6, 6)]}
    mu, labels = [], []
    for c, n in ((0, 100), (1, 300)):
        for cx, cy in centres[c]:
            mu.append(rng.normal((cx, cy), 0.3, size=(n // 2, 2)))
            labels += [c] * (n // 2)
    mu, labels = np.concatenate(mu), np.array(labels)
    p = fit_prior(mu, seed=0, labels=labels, class_names=["left", "right"])
    assert p.classes is not None and set(p.classes.tolist()) == {0, 1}
    assert abs(p.weights[p.classes == 1].sum() - 0.75) < 1e-9  # the class's share of the images
    # every component sits inside its own class's half of the plane
    assert (np.sign(p.means[:, 0]) == np.where(p.classes == 1, 1, -1)).all()
    z = p.sample(500, np.random.default_rng(1), class_name="left")
    assert (z[:, 0] < 0).all()  # only class 0's components
    q = LatentPrior.from_bytes(p.to_bytes())
    assert np.array_equal(q.classes, p.classes) and q.class_names == ("left", "right")
    assert "one mixture per class (2)" in q.describe()
    with pytest.raises(ValueError, match="no class 'up'; the classes are left, right"):
        p.sample(4, np.random.default_rng(0), class_name="up")
    with pytest.raises(ValueError, match="not fitted per class"):
        _two_blobs().sample(4, np.random.default_rng(0), class_name="left")
    bad = LatentPrior(p.weights, p.means, p.chol, p.classes[:-1], p.class_names)  # one label short
    with pytest.raises(ArtifactCorrupt, match=r"classes are \(39,\), not \[40\]"):
        LatentPrior.from_bytes(bad.to_bytes())
