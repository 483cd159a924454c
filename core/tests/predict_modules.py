"""Modules and datamodules a user might write, for the predict and export tests: none of them
subclasses anything of ours, none has `net`, `num_classes` or `splits` unless a test needs it.

- `TinyAutoEncoder`: the Lightning tutorial's autoencoder, small: its own `configure_optimizers`,
  metrics `train_loss`/`val_loss`, no labels used; `forward` is the 3-d code.
- `DictPredictor`: an autoencoder whose `predict_step` returns a dict (a code, the reconstruction,
  the per-sample error) and whose `forward` returns a dict too.
- `Untraceable`: its `forward` returns a `None` beside the code (`torch.jit.trace` refuses it).
- `PlainMNISTDataModule`: the tutorial's `MNISTDataModule` (torchvision's MNIST, transforms,
  `random_split`, its own dataloaders); `expkit.testing.write_mnist` writes tiny MNIST files in
  the real IDX format for it.
"""

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, random_split


def _inputs(batch):
    """The input of a batch as a datamodule yields it: `(x, y)` or a bare `x`."""
    return batch[0] if isinstance(batch, list | tuple) else batch


class TinyAutoEncoder(pl.LightningModule):
    output_names = ["code"]

    def __init__(self, input_shape: list[int], code_dim: int = 3, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        size = int(np.prod(input_shape))
        self.encoder = nn.Sequential(nn.Linear(size, 16), nn.ReLU(), nn.Linear(16, code_dim))
        self.decoder = nn.Sequential(nn.Linear(code_dim, 16), nn.ReLU(), nn.Linear(16, size))
        self.example_input_array = torch.zeros(2, *input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x.flatten(1))

    def _loss(self, batch) -> Tensor:
        x = _inputs(batch).flatten(1)
        return nn.functional.mse_loss(self.decoder(self.encoder(x)), x)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test_loss", self._loss(batch))

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        return self(_inputs(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class DictPredictor(TinyAutoEncoder):
    """No `output_names`, no `example_input_array`: export names outputs by `forward`'s dict keys
    and takes its example input from the datamodule."""

    output_names = None

    def __init__(self, input_shape: list[int], code_dim: int = 2, lr: float = 0.01) -> None:
        super().__init__(input_shape, code_dim, lr)
        self.example_input_array = None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        code = self.encoder(x.flatten(1))
        return {"code": code, "recon": self.decoder(code)}

    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        x = _inputs(batch)
        out = self(x)
        out["error"] = (out["recon"] - x.flatten(1)).square().mean(dim=1)
        return out


class Untraceable(TinyAutoEncoder):
    """`forward` returns `(code, None)`: TorchScript's tracer takes tensors only, ONNX takes it."""

    output_names = ["code"]

    def forward(self, x: Tensor):
        return self.encoder(x.flatten(1)), None

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        return self(_inputs(batch))[0]


# ---- the tutorial's datamodule ------------------------------------------------------------------
class PlainMNISTDataModule(pl.LightningDataModule):
    """The Lightning tutorial's `MNISTDataModule`, with the split sizes of the tiny files."""

    def __init__(self, data_dir: str = "./", batch_size: int = 32) -> None:
        super().__init__()
        from torchvision import transforms

        self.data_dir = data_dir
        self.batch_size = batch_size
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )

    def prepare_data(self) -> None:
        from torchvision.datasets import MNIST

        MNIST(self.data_dir, train=True, download=False)
        MNIST(self.data_dir, train=False, download=False)

    def setup(self, stage: str) -> None:
        from torchvision.datasets import MNIST

        if stage == "fit":
            full = MNIST(self.data_dir, train=True, transform=self.transform)
            n_val = len(full) // 6
            self.mnist_train, self.mnist_val = random_split(
                full, [len(full) - n_val, n_val], generator=torch.Generator().manual_seed(42)
            )
        if stage == "test":
            self.mnist_test = MNIST(self.data_dir, train=False, transform=self.transform)
        if stage == "predict":
            self.mnist_predict = MNIST(self.data_dir, train=False, transform=self.transform)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.mnist_train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.mnist_val, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.mnist_test, batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.mnist_predict, batch_size=self.batch_size)
