"""torchvision's ResNet adapted to small images (3x3 stem, no max-pool, any channel count)."""

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models import resnet

from expkit.errors import ConfigError


class SmallImageResNet(nn.Module):
    """A torchvision ResNet (`arch`: resnet18/34/50...) whose stem keeps the resolution of 8-32 px inputs."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, arch: str = "resnet18"
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"model=resnet needs images (data.input_shape=[C, H, W]), but data.input_shape="
                f"{list(input_shape)}; for a table use model=mlp (or model=regressor)."
            )
        builders = {
            name: getattr(resnet, name)
            for name in resnet.__all__
            if name.startswith(("resnet", "wide_"))
        }
        if arch not in builders:
            raise ConfigError(
                f"model.net.arch={arch!r} is not a torchvision ResNet; allowed: {sorted(builders)}"
            )
        self.net = builders[arch](weights=None, num_classes=num_classes)
        self.net.conv1 = nn.Conv2d(
            input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.net.maxpool = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
