"""An unsupervised autoencoder, written as Lightning's own tutorial writes one (`LitAutoEncoder`).

It shows that any `LightningModule` trains here with nothing of the template's to subclass: it
builds its own optimizer in `configure_optimizers`, logs `train_loss`/`val_loss`/`test_loss` (no
`stage/` prefix), and ignores the labels the datamodule yields. Its config,
`configs/model/autoencoder.yaml`, sets the monitor and the optimized metric it logs.
"""

import math
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LitAutoEncoder(pl.LightningModule):
    """Encode each (flattened) input into `code_size` numbers and reconstruct it from them."""

    def __init__(
        self, input_shape: Sequence[int], code_size: int = 3, hidden: int = 64, lr: float = 1e-3
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        size = math.prod(input_shape)
        self.encoder = nn.Sequential(
            nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, code_size)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_size, hidden), nn.ReLU(), nn.Linear(hidden, size)
        )
        self.example_input_array = torch.zeros(1, *input_shape)  # what export traces with

    def forward(self, x: Tensor) -> Tensor:
        """The code of each input: what a user of a trained autoencoder wants from it."""
        return self.encoder(x.flatten(1))

    def _loss(self, batch) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch  # the labels are not used
        x = x.flatten(1)
        return F.mse_loss(self.decoder(self.encoder(x)), x)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
