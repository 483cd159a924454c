"""Every option of every config group composes, and what it configures instantiates."""

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from expkit.errors import ConfigError
from expkit.run.build import build_trainer, instantiate_callbacks, instantiate_loggers
from expkit.run.module_checks import dry_run
from expkit.run.validate import validate_config
from expkit.utils.metric_names import find, stage_of
from tests.helpers import config_options

DATA, MODELS = config_options("data"), config_options("model")
HARDWARE = {
    "gpu": torch.cuda.is_available(),
    "ddp": torch.cuda.is_available(),
    "mps": torch.backends.mps.is_available(),
}


def test_every_group_has_options():
    for group in (
        "data",
        "model",
        "optimizer",
        "scheduler",
        "trainer",
        "callbacks",
        "logger",
        "debug",
        "experiment",
    ):
        assert config_options(group), group


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    """A folder for `data=image_folder`, whose class count and image shape are read from it."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    for name in ("a", "b"):
        (root / name).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / name / "0.png")
    return root


def data_args(data: str, image_root) -> list[str]:
    return [f"data={data}", *([f"data.root={image_root}"] if data == "image_folder" else [])]


@pytest.mark.parametrize("data", DATA)
def test_data_instantiates(make_cfg, data, image_root):
    cfg = make_cfg("train", data_args(data, image_root))
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.num_classes == cfg.data.num_classes
    assert list(dm.input_shape) == list(cfg.data.input_shape)


def _pairs() -> list:
    """Every model with the default data and every dataset with the default model run fast; the
    rest of the cross product is `slow` (each case composes a whole config, ~0.3 s)."""
    return [
        pytest.param(
            model, data, marks=() if model == "mlp" or data == "digits" else pytest.mark.slow
        )
        for data in DATA
        for model in MODELS
    ]


class StandInData(pl.LightningDataModule):
    """Batches shaped as a data config says (inputs of `input_shape`, targets as its task has
    them), so every model x data pair steps without the dataset's files."""

    def __init__(self, input_shape, num_classes: int, task: str = "classification") -> None:
        super().__init__()
        self.input_shape, self.num_classes, self.task = tuple(input_shape), num_classes, task
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(8, *self.input_shape, generator=gen)
        if task == "regression":
            y = torch.randn(8, generator=gen)
        else:
            y = torch.randint(0, num_classes, (8,), generator=gen)
        self.dataset = torch.utils.data.TensorDataset(x, y)

    def _loader(self):
        return torch.utils.data.DataLoader(self.dataset, batch_size=4)

    train_dataloader = val_dataloader = test_dataloader = _loader


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_every_model_works_with_every_dataset(make_cfg, model, data, image_root):
    """Each pair instantiates and runs one training step, one validation step and one test step
    (the dry run every training run of a module without `LOGGED_METRICS` makes), and logs the
    metric its config monitors. Nothing about the module's outputs is assumed: any module goes."""
    cfg = make_cfg("train", [f"model={model}", *data_args(data, image_root)])
    if len(cfg.data.input_shape) != 3 and model in ("cnn", "resnet"):
        with pytest.raises(InstantiationException, match="needs images"):
            instantiate(cfg.model, _convert_="all")
        return
    module = instantiate(cfg.model, _convert_="all")
    task = cfg.data.get("task", "classification")
    datamodule = StandInData(cfg.data.input_shape, cfg.data.num_classes, task)
    if model == "regressor" and task != "regression":  # refused at setup, in one line
        with pytest.raises(ConfigError, match="model=regressor"):
            dry_run(module, datamodule, cfg, with_test=True)
        return
    logged = dry_run(module, datamodule, cfg, with_test=True)
    assert cfg.monitor.metric in logged, (cfg.monitor.metric, logged)
    assert find(cfg.optimized_metric, logged), (cfg.optimized_metric, logged)
    assert any(stage_of(name) == "test" for name in logged), logged


#: every optimizer alone, and every scheduler on one optimizer (a scheduler wraps any optimizer the
#: same way; the full product composed 15 configs for the same coverage)
OPTIMIZER_SCHEDULER = sorted(
    {(o, "none") for o in config_options("optimizer")}
    | {("sgd", s) for s in config_options("scheduler")}
)


@pytest.mark.parametrize(("optimizer", "scheduler"), OPTIMIZER_SCHEDULER)
def test_optimizer_and_scheduler_build(make_cfg, optimizer, scheduler):
    cfg = make_cfg("train", [f"optimizer={optimizer}", f"scheduler={scheduler}"])
    model = instantiate(cfg.model, _convert_="all")
    conf = model.configure_optimizers()
    opt = conf["optimizer"] if isinstance(conf, dict) else conf
    assert opt.param_groups[0]["lr"] == cfg.optimizer.lr
    assert (scheduler == "none") == (not isinstance(conf, dict))


@pytest.mark.parametrize("trainer", config_options("trainer"))
def test_trainer_builds(make_cfg, trainer):
    cfg = make_cfg("train", [f"trainer={trainer}"])
    if trainer in HARDWARE and not HARDWARE[trainer]:
        with pytest.raises(ConfigError, match="trainer.accelerator"):
            validate_config(cfg)  # a clear error on this machine, before anything starts
        return
    validate_config(cfg)
    assert build_trainer(cfg).max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("callbacks", config_options("callbacks"))
def test_callbacks_instantiate(make_cfg, callbacks):
    cfg = make_cfg("train", [f"callbacks={callbacks}"])
    assert len(instantiate_callbacks(cfg.callbacks)) == len(
        [v for v in (cfg.callbacks or {}).values() if v]
    )


#: MLflow and W&B import for ~1-1.5 s each; the fast suite instantiates both anyway in
#: test_results.py's `logger=many` run, so here they run with the slow tests
HEAVY_LOGGERS = {"many", "mlflow", "wandb"}


@pytest.mark.parametrize(
    "logger",
    [
        pytest.param(o, marks=pytest.mark.slow) if o in HEAVY_LOGGERS else o
        for o in config_options("logger")
    ],
)
def test_loggers_instantiate(make_cfg, logger):
    cfg = make_cfg("train", [f"logger={logger}"])
    assert len(instantiate_loggers(cfg.logger)) == len(cfg.logger or {})


@pytest.mark.parametrize("debug", config_options("debug"))
def test_debug_configs_build_a_trainer(make_cfg, debug):
    cfg = make_cfg("train", [f"debug={debug}"])
    assert cfg.task_name == "debug"
    build_trainer(cfg)


@pytest.mark.parametrize("experiment", config_options("experiment"))
def test_experiments_instantiate(make_cfg, experiment):
    cfg = make_cfg("train", [f"experiment={experiment}"])
    validate_config(cfg)
    instantiate(cfg.data, _convert_="all")
    instantiate(cfg.model, _convert_="all")


def test_eval_config_composes(make_cfg):
    cfg = make_cfg("eval", ["ckpt_path=some.ckpt"])
    assert cfg.task_name == "eval" and cfg.ckpt_path == "some.ckpt"


@pytest.mark.parametrize(
    ("task", "overrides"),
    [
        ("train", ["trainer.max_epochs=2", "~callbacks.rich_progress_bar", "logger=csv", "seed=7"]),
        # % if data_torchvision
        (
            "train",
            ["data=mnist", "optimizer.lr=1e-3", "+trainer.enable_progress_bar=false", "debug=fdr"],
        ),
        # % endif
        (
            "train",
            ["callbacks=none", "tags=[a,b]", "paths.output_dir=/elsewhere/run", "cv.folds=3"],
        ),
        ("train", ["experiment=digits_cnn", "trainer.max_epochs=1", "hydra.job.name=x"]),
        # % if data_torchvision
        ("eval", ["ckpt_path=/x/last.ckpt", "data=mnist", "data.batch_size=256", "seed=3"]),
        # % endif
    ],
)
def test_the_test_helpers_compose_gives_hydras_config(tmp_path, task, overrides):
    """tests.helpers.compose_config reuses a composed defaults tree; it must equal Hydra's own."""
    from expkit.run.compose import compose_config as hydra_compose
    from tests.helpers import compose_config as helper_compose

    theirs = OmegaConf.to_yaml(hydra_compose(task, tmp_path / "run", overrides, tmp_path / "c"))
    for _ in range(2):  # the second call is served from the cache
        ours = helper_compose(task, tmp_path / "run", overrides, tmp_path / "c")
        assert OmegaConf.to_yaml(ours) == theirs
        assert OmegaConf.is_struct(ours)


def test_the_test_helpers_compose_reports_hydras_errors(tmp_path):
    from hydra.errors import ConfigCompositionException

    from tests.helpers import compose_config as helper_compose

    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        helper_compose("train", tmp_path / "run", ["trainer.max_epoch=3"])
