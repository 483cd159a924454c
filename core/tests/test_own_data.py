"""Your own data: `data=image_folder` (folders of images) and `data=csv` (a table), written here."""

import gc
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from expkit.data import image_cache
from expkit.data.image_folder import ImageFolderDataModule
from expkit.data.table import TableDataModule
from expkit.errors import ConfigError, DatasetNotFoundError
from helpers import FAST
from src.train import train

RNG = np.random.default_rng(0)
CLASSES = ("cat", "dog", "owl")


def write_images(root: Path, per_class: int = 6, size=(8, 8), fmt: str = "png") -> Path:
    """`root/<class>/<i>.<fmt>`: each class a different brightness, so classes are learnable."""
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = RNG.integers(0, 60, (*size, 3)) + 90 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.{fmt}")
    return root


def image_dm(root: Path, cache: Path, **kw) -> ImageFolderDataModule:
    kw = {"num_classes": 3, "input_shape": [3, 8, 8], "val_size": 2, "test_size": 3, **kw}
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(cache), **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


# ---- image folders --------------------------------------------------------------------------
def test_carved_splits_classes_and_uint8_memory_map(tmp_path):
    dm = image_dm(write_images(tmp_path / "imgs"), tmp_path / "cache")
    assert dm.class_names == list(CLASSES)
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 13, "val": 2, "test": 3}
    x, y = dm.splits["train"]
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 8, 8)
    (npy,) = (tmp_path / "cache").glob("*.npy")
    assert isinstance(np.load(npy, mmap_mode="c"), np.memmap)
    batch, _ = dm.on_after_batch_transfer((x, y), 0)  # normalized with the train split's stats
    assert batch.dtype == torch.float32 and abs(batch.mean().item()) < 0.05
    assert dm.state_dict()["class_names"] == list(CLASSES)


def test_split_folders_are_kept(tmp_path):
    root = tmp_path / "imgs"
    write_images(root / "train", per_class=4)
    write_images(root / "test", per_class=2)
    dm = image_dm(root, tmp_path / "cache", val_size=3)
    assert {k: len(v[1]) for k, v in dm.splits.items()} == {"train": 9, "val": 3, "test": 6}


def test_cache_is_reused_and_rebuilt_when_a_file_or_setting_changes(tmp_path, monkeypatch):
    root, cache = write_images(tmp_path / "imgs"), tmp_path / "cache"
    first = image_dm(root, cache)
    decoded = []
    real = ImageFolderDataModule._decode
    monkeypatch.setattr(
        ImageFolderDataModule, "_decode", lambda self, f: decoded.append(f) or real(self, f)
    )
    second = image_dm(root, cache)
    assert decoded == [] and torch.equal(first.splits["train"][0], second.splits["train"][0])
    file = root / "dog" / "0.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(file)
    os.utime(file, ns=(1, 1))  # a new mtime, whatever the clock's resolution
    image_dm(root, cache)
    assert len(decoded) == 18  # rebuilt
    decoded.clear()
    image_dm(root, cache, input_shape=[1, 4, 4])  # another setting: another cache
    assert len(decoded) == 18 and len(list(cache.glob("*.meta.pt"))) == 3


def test_any_format_any_size_is_converted_and_resized(tmp_path):
    root = tmp_path / "imgs"
    write_images(root, per_class=3, size=(10, 12), fmt="jpg")
    write_images(root, per_class=2, size=(5, 7), fmt="bmp")
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(root / "owl" / "grey.gif")
    dm = image_dm(root, tmp_path / "cache", input_shape=[1, 6, 6], val_size=2, test_size=2)
    assert sum(len(v[1]) for v in dm.splits.values()) == 16
    assert dm.splits["train"][0].shape[1:] == (1, 6, 6)


def test_a_kill_mid_build_leaves_no_cache(tmp_path, monkeypatch):
    root, cache = write_images(tmp_path / "imgs"), tmp_path / "cache"
    calls = []

    def dies(self, file):
        calls.append(file)
        if len(calls) == 10:
            raise KeyboardInterrupt  # what a Ctrl+C mid-decode raises
        return np.zeros((8, 8, 3), np.uint8)

    monkeypatch.setattr(ImageFolderDataModule, "_decode", dies)
    with pytest.raises(KeyboardInterrupt):
        image_dm(root, cache)
    assert list(cache.iterdir()) == []  # no torn cache under a final name, no temp left behind


@pytest.mark.parametrize(
    ("break_it", "error", "message"),
    [
        (
            lambda r: [p.unlink() for p in (r / "owl").iterdir()],
            ConfigError,
            r"owl holds no images",
        ),
        (
            lambda r: (r / "dog" / "3.png").write_bytes(b"not a png"),
            ConfigError,
            r"cannot read image .*dog/3.png.*data.on_error=skip",
        ),
        (
            lambda r: None,
            ConfigError,
            r"data.num_classes=4 but .* 3 class folders \(cat, dog, owl\)",
        ),
        (
            lambda r: r.rename(r.with_name("gone")),
            DatasetNotFoundError,
            r"data.root=.* not a folder",
        ),
    ],
    ids=["empty-class", "unreadable", "num-classes", "no-root"],
)
def test_bad_folders_are_one_line_errors(tmp_path, break_it, error, message):
    root = write_images(tmp_path / "imgs")
    break_it(root)
    num_classes = 4 if "num-classes" in str(message) or "class folders" in message else 3
    with pytest.raises(error, match=message):
        image_dm(root, tmp_path / "cache", num_classes=num_classes)


def test_unreadable_images_can_be_skipped(tmp_path):
    root = write_images(tmp_path / "imgs")
    (root / "dog" / "3.png").write_bytes(b"not a png")
    dm = image_dm(root, tmp_path / "cache", on_error="skip")
    assert sum(len(v[1]) for v in dm.splits.values()) == 17
    assert [Path(f).name for f in dm.skipped] == ["3.png"]


def test_two_builders_at_once_leave_one_good_cache(tmp_path):
    root, cache = write_images(tmp_path / "imgs"), tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: image_dm(root, cache), range(2))
    assert torch.equal(first.splits["train"][0], second.splits["train"][0])
    assert len(list(cache.glob("*.npy"))) == 1 and list(cache.glob(".*")) == []


def test_a_folder_link_loop_does_not_hang_the_listing(tmp_path):
    root = write_images(tmp_path / "imgs")
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    (root / "dog" / "linked.png").symlink_to(root / "dog" / "0.png")  # linked files are images
    dm = image_dm(root, tmp_path / "cache")
    assert sum(len(v[1]) for v in dm.splits.values()) == 19


def test_mixed_sizes_without_resize_name_the_file(tmp_path):
    root = write_images(tmp_path / "imgs")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(root / "cat" / "odd.png")
    with pytest.raises(ConfigError, match=r"data.resize=false but .*odd.png is 8×9 pixels"):
        image_dm(root, tmp_path / "cache", resize=False)


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def test_workers_path_applies_a_per_sample_transform(tmp_path):
    dm = image_dm(write_images(tmp_path / "imgs"), tmp_path / "cache", num_workers=1)
    dm.transform = _flip
    loader = dm.train_dataloader()
    assert isinstance(loader, torch.utils.data.DataLoader)
    # the whole epoch: a worker left with unread batches holds its process's exit (5 s per loader)
    x = torch.cat([x for x, _ in loader])
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 8, 8)
    images = dm.splits["train"][0]

    def as_set(t: torch.Tensor) -> list:
        return sorted(tuple(sample.flatten().tolist()) for sample in t)

    assert as_set(x) == as_set(images.flip(-1)) != as_set(images)  # each sample flipped, once
    del loader  # its persistent worker stops now, not in whichever test the collector runs next
    gc.collect()


def test_image_folder_trains_and_its_checkpoint_names_the_classes(make_cfg, tmp_path):
    root = write_images(tmp_path / "imgs", per_class=10)
    # no data.num_classes, no data.input_shape: both read from the folder
    cfg = make_cfg("train", [*FAST, "data=image_folder", f"data.root={root}", "data.batch_size=8"])
    assert cfg.model.num_classes == 3 and list(cfg.model.net.input_shape) == [3, 8, 8]
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1
    best = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["best_model_path"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["ImageFolderDataModule"]["class_names"] == list(CLASSES)


def test_image_folder_reads_grey_channels_and_falls_back_to_64_for_mixed_sizes(make_cfg, tmp_path):
    grey = tmp_path / "grey"
    for name in ("a", "b"):
        (grey / "train" / name).mkdir(parents=True)
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(grey / "train" / name / "0.png")
    cfg = make_cfg("train", ["data=image_folder", f"data.root={grey}"])
    assert cfg.data.num_classes == 2 and list(cfg.data.input_shape) == [1, 5, 7]
    mixed = write_images(tmp_path / "mixed")
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(mixed / "cat" / "odd.png")
    cfg = make_cfg("train", ["data=image_folder", f"data.root={mixed}"])
    assert list(cfg.data.input_shape) == [3, 64, 64]
    typed = make_cfg(
        "train", ["data=image_folder", f"data.root={mixed}", "data.input_shape=[1,8,8]"]
    )
    assert list(typed.model.net.input_shape) == [1, 8, 8]  # a typed value wins


def test_image_folder_without_its_folder_is_one_line(make_cfg, tmp_path):
    from expkit.run.cli import one_line_error

    cfg = make_cfg("train", [*FAST, "data=image_folder", f"data.root={tmp_path / 'nope'}"])
    with pytest.raises(Exception) as raised:  # OmegaConf wraps what its resolver raised
        train(cfg)
    line = one_line_error(raised.value, "train", [])
    assert line is not None and re.match(r"data.root='.*nope' is not a folder", line), line


# ---- tables ---------------------------------------------------------------------------------
def write_table(path: Path, rows: int = 60, bad: str | None = None) -> Path:
    """numeric `size`, `weight`; categorical `color`; class target `kind`."""
    lines = ["size,weight,color,kind"]
    for i in range(rows):
        kind = ("small", "large")[i % 2]
        lines.append(f"{i % 2 * 10 + i / 10:.2f},{50 + i},{('red', 'blue', 'green')[i % 3]},{kind}")
    if bad is not None:
        lines[5] = bad
    path.write_text("\n".join(lines) + "\n")
    return path


def table_dm(path: Path, **kw) -> TableDataModule:
    kw = {"target": "kind", "num_classes": 2, "input_shape": [5], "batch_size": 8, **kw}
    dm = TableDataModule(path=str(path), **kw)
    dm.setup("fit")
    return dm


def test_table_one_hot_and_standardisation_fitted_on_train_only(tmp_path):
    dm = table_dm(write_table(tmp_path / "t.csv"))
    assert dm.class_names == ["large", "small"]
    assert dm.fitted["numeric"] == ["size", "weight"]
    assert dm.fitted["categories"] == {"color": ["blue", "green", "red"]}
    x_train = dm.splits["train"][0]
    assert dm.fitted["mean"] == pytest.approx(x_train[:, :2].double().mean(0).tolist())
    normalized = dm.normalize(x_train)
    assert normalized[:, :2].mean(0).abs().max() < 1e-5  # standardized with train's own stats
    assert set(normalized[:, 2:].unique().tolist()) == {0.0, 1.0}  # one-hot passes unchanged
    all_weights = torch.arange(50, 110, dtype=torch.float64)
    assert dm.fitted["mean"][1] != pytest.approx(float(all_weights.mean()))  # not all the rows


def test_checkpointed_state_wins_over_a_changed_file(tmp_path):
    dm = table_dm(write_table(tmp_path / "t.csv"))
    state = dm.state_dict()
    other = write_table(tmp_path / "t2.csv", rows=90)  # other rows: other statistics
    restored = table_dm(other)
    restored.load_state_dict(state)
    assert restored.fitted["mean"] == dm.fitted["mean"]
    x = torch.tensor([[1.0, 60.0, 0.0, 1.0, 0.0]])
    assert torch.equal(restored.normalize(x), dm.normalize(x))


@pytest.mark.parametrize(
    ("bad", "kw", "message"),
    [
        (
            None,
            {"target": "label"},
            r"data.target='label' is not a column .* size, weight, color, kind",
        ),
        ("4.5,abc,red,small", {}, r"column 'weight' is numeric but line 6 holds 'abc'"),
        ("4.5,,red,small", {}, r"column 'weight' is numeric but line 6 holds ''"),
        (
            None,
            {"input_shape": [4]},
            r"gives 5 features \(2 numeric, one-hot of color \(3\)\).*\[5\]",
        ),
        (None, {"num_classes": 3}, r"holds 2 classes \(large, small\); set data.num_classes=2"),
        (None, {"categorical": ["colour"]}, r"data.categorical=\['colour'\] names \['colour'\]"),
    ],
    ids=["target", "non-numeric", "empty", "input-shape", "num-classes", "categorical"],
)
def test_bad_tables_are_one_line_errors(tmp_path, bad, kw, message):
    with pytest.raises(ConfigError, match=message):
        table_dm(write_table(tmp_path / "t.csv", bad=bad), **kw)


def test_table_trains_and_its_checkpoint_holds_the_standardisation(make_cfg, tmp_path):
    path = write_table(tmp_path / "t.csv")
    table = [f"data.path={path}", "data.target=kind", "data.num_classes=2", "data.input_shape=[5]"]
    cfg = make_cfg("train", [*FAST, "data=csv", *table])
    metrics = train(cfg)
    assert metrics["test/acc"] >= 0.5
    best = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["best_model_path"]
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["TableDataModule"]["fitted"]["numeric"] == ["size", "weight"]


def test_image_cache_writer_is_atomic_even_for_meta(tmp_path, monkeypatch):
    """A crash between the images and the meta file leaves no cache that looks complete."""
    root, cache = write_images(tmp_path / "imgs"), tmp_path / "cache"

    def crash(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(image_cache.torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        image_dm(root, cache)
    assert list(cache.glob("*.meta.pt")) == [] and list(cache.glob(".*tmp*")) == []


# ---- the docs' commands (README.md or the page of the docs site that holds the section) -------
