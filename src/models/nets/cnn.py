"""A small VGG-style convolutional network that works from 8x8 up to 32x32 (and larger) inputs."""

from collections.abc import Sequence

from torch import Tensor, nn

from expkit.errors import ConfigError


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks, each halving the resolution while it is above 4 px, then global pooling."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"model=cnn needs images (data.input_shape=[C, H, W]), but data.input_shape="
                f"{list(input_shape)}; for a table use model=mlp (or model=regressor)."
            )
        c_in, size = input_shape[0], min(input_shape[1:])
        blocks = []
        for c_out in channels:
            pool = size >= 8
            blocks.append(_block(c_in, c_out, pool))
            c_in, size = c_out, size // 2 if pool else size
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
