"""scikit-learn's bundled 8x8 handwritten digits: real data that ships with an installed package.

1,797 images in 10 classes, no download, so `make train` works offline on a fresh clone.
"""

import torch

from expkit.data.in_memory import InMemoryDataModule, Split


class DigitsDataModule(InMemoryDataModule):
    """Digits split 80/20 into train and test (fixed seed); val is carved from train."""

    name = "digits"
    mean = (0.305,)
    std = (0.376,)
    max_value = 16.0  # pixel values are 0..16
    test_fraction = 0.2

    def load_splits(self) -> dict[str, Split]:
        from sklearn.datasets import load_digits  # imported here: only this dataset needs sklearn

        bunch = load_digits()
        x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)  # N×1×8×8, values 0..16
        y = torch.as_tensor(bunch.target, dtype=torch.long)
        order = torch.randperm(
            len(y), generator=torch.Generator().manual_seed(self.hparams.split_seed)
        )
        n_test = int(round(self.test_fraction * len(y)))
        test, train = order[:n_test], order[n_test:]
        return {"train": (x[train], y[train]), "test": (x[test], y[test])}
