"""Is the discriminator alive? A VAE-GAN whose D cannot tell real images from the decoder's is a VAE
with a constant extra loss: its adversarial half does nothing, and nothing else in the logs says so
(a hinge loss of 2.0 is that "cannot tell" level; on the digits quick start it sat there from the
first GAN step to the last before the recipe gave the decoder a lower rate in the GAN stages).

The watch counts the GAN steps on which D's mean logit on real images is less than CANNOT_TELL above
its mean logit on the fakes, and says so in one line, during the run and at its end, once that is
more than DEAD_SHARE of the GAN steps."""

from __future__ import annotations

from dataclasses import dataclass

CANNOT_TELL = 0.1  # logits: hinge D pushes real to >= +1 and fakes to <= -1, a gap of 2 when it can tell
DEAD_SHARE = 0.10
MIN_STEPS = 200  # GAN steps before the share is judged: D's first steps after the VAE stage are noisy


@dataclass
class DiscriminatorWatch:
    steps: int = 0  # GAN steps watched (across resumes: saved in train_state.pt)
    dead: int = 0  # of which D could not tell real from fake
    warned: bool = False

    def update(self, d_real: float, d_fake: float) -> str | None:
        """Record one GAN step; returns the warning line the first time D is found dead."""
        self.steps += 1
        self.dead += d_real - d_fake < CANNOT_TELL
        if not self.warned and self.is_dead:
            self.warned = True
            return self.warning()
        return None

    @property
    def share(self) -> float:
        return self.dead / max(1, self.steps)

    @property
    def is_dead(self) -> bool:
        return self.steps >= MIN_STEPS and self.share > DEAD_SHARE

    def warning(self) -> str:
        return (
            f"warning: the discriminator cannot tell real from generated images on {self.share:.0%} of "
            f"{self.steps} GAN steps (its mean logit on real is within {CANNOT_TELL} of that on fakes): the "
            "adversarial half is not training the decoder; lower --adv-lr or raise --lr-d"
        )
