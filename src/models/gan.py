"""A small GAN trained with manual optimization: two optimizers, a `training_step` that returns nothing.

It shows the other half of Lightning's API working here: `automatic_optimization = False`, the
module steps its own optimizers, and it logs with `on_step=True, on_epoch=True` (Lightning then
logs `train/d_loss_step` and `train/d_loss_epoch`). Validation and testing score how far the
generated samples' per-pixel mean and spread are from the real ones (`val/gap`, lower is better),
with noise drawn from a generator seeded by the batch index, so a test repeats exactly.
Its config, `configs/model/gan.yaml`, sets the monitor and the optimized metric.
"""

import math
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GAN(pl.LightningModule):
    """Generator: noise of `latent_dim` -> a sample of `input_shape`; discriminator: sample -> logit."""

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: int = 16,
        hidden: int = 64,
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.shape = tuple(input_shape)
        size = math.prod(input_shape)
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, size)
        )
        self.discriminator = nn.Sequential(
            nn.Linear(size, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )
        self.example_input_array = torch.zeros(1, latent_dim)  # what export traces with

    def forward(self, z: Tensor) -> Tensor:
        """Samples generated from noise `z` (batch x latent_dim)."""
        return self.generator(z).view(len(z), *self.shape)

    def _noise(self, n: int, seed: int | None = None) -> Tensor:
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn(n, self.hparams.latent_dim, device=self.device, generator=gen)

    def training_step(self, batch, batch_idx: int) -> None:
        real = (batch[0] if isinstance(batch, list | tuple) else batch).flatten(1)
        opt_g, opt_d = self.optimizers()
        ones = real.new_ones(len(real), 1)
        zeros = real.new_zeros(len(real), 1)

        # toggle_optimizer: only the stepped network's parameters require gradients meanwhile
        self.toggle_optimizer(opt_g)
        fake = self.generator(self._noise(len(real)))
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        d_real = F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
        d_fake = F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros)
        d_loss = (d_real + d_fake) / 2
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.log_dict({"train/g_loss": g_loss, "train/d_loss": d_loss}, on_step=True, on_epoch=True)

    def _gap(self, batch, batch_idx: int) -> Tensor:
        real = (batch[0] if isinstance(batch, list | tuple) else batch).flatten(1)
        fake = self.generator(self._noise(len(real), seed=batch_idx))
        mean_gap = (real.mean(0) - fake.mean(0)).pow(2).mean()
        std_gap = (real.std(0) - fake.std(0)).pow(2).mean() if len(real) > 1 else mean_gap * 0
        return mean_gap + std_gap

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/gap", self._gap(batch, batch_idx), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test/gap", self._gap(batch, batch_idx))

    def configure_optimizers(self):
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        return (
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
        )
