"""Run tags (`tags=[baseline,cnn]`): labels a user gives runs to find and group them later.

They go into results.json, TensorBoard's hparams, MLflow tags and W&B tags, and
`python -m expkit.runs_table --tag baseline` selects by them. Each logger has its own rules for
what a tag may be (W&B: at most 64 characters; MLflow: tag names of letters, digits and
`_ - . / :` and spaces), so the one rule here satisfies all of them, and a bad tag fails
before anything trains rather than inside a logger after the first epoch.
"""

import re
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from expkit.errors import ConfigError

TAG_PATTERN = re.compile(r"^[A-Za-z0-9_.:/+-]{1,64}$")
ALLOWED = "a list of names of 1-64 letters, digits or _ . : / + - (e.g. tags=[baseline,cnn])"


def check_tags(cfg: DictConfig) -> list[str]:
    """The run's tags as plain strings (duplicates dropped, order kept); `ConfigError` if bad."""
    value = cfg.get("tags")
    if value is None:
        return []
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"tags={value!r} is not allowed: use {ALLOWED}.")
    tags: list[str] = []
    for tag in value:
        if isinstance(tag, bool) or not isinstance(tag, str | int | float):
            raise ConfigError(f"tags={value!r}: tag {tag!r} is not allowed; use {ALLOWED}.")
        text = str(tag)
        if not TAG_PATTERN.match(text):
            raise ConfigError(f"tags={value!r}: tag {text!r} is not allowed; use {ALLOWED}.")
        if text not in tags:
            tags.append(text)
    return tags
