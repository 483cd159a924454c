"""This repository as a copier template (copier.yml): what `copier copy` generates for each choice
of examples and extras, that the generated projects train and test, and that `copier update` takes
a later template version into a project a user has edited, keeping the user's edits.

The template source is a throwaway clone of this working tree with every uncommitted edit committed
(copier reads a git template at a commit), so the tests check what is on disk, not the last commit.
Generated projects get a hardlinked copy of this repository's .venv (no torch download); their own
Makefile then syncs it to their lock, as a user's first `make train` does.
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIER = ROOT / ".venv" / "bin" / "copier"
GIT_ID = ["-c", "user.name=template-test", "-c", "user.email=template-test@example.invalid"]
#: marker syntax (copier.yml's _envops) that must never reach a generated project
MARKERS = re.compile(rb"^\s*# %|<!--[%=#]", re.MULTILINE)
#: the page that shows the markers (inside a Jinja raw block): generated, it loses the raw lines only
SHOWS_THE_MARKERS = "docs/generate-and-update.md"
RAW_LINES = re.compile(rb"^<!--% (raw -|endraw )%-->\n", re.MULTILINE)

ALL_KEPT: dict[str, bool] = {
    "data_torchvision": True,
    "data_image_folder": True,
    "data_csv": True,
    "model_regressor": True,
    "model_autoencoder": True,
    "model_gan": True,
    "slurm": True,
    "gpu_pool": True,
    "loggers": True,
    "optuna": True,
}
MINIMAL = dict.fromkeys(ALL_KEPT, False)
MIXED = {**MINIMAL, "data_csv": True, "model_regressor": True, "model_gan": True, "optuna": True}


def previous_release() -> tuple[str, str]:
    """`(version, commit)` of the newest release CHANGELOG.md names with its commit: the template
    version the update test starts from (its tag may not have travelled with main; its commit has)."""
    for line in (ROOT / "CHANGELOG.md").read_text().splitlines():
        match = re.match(r"## (\d+\.\d+\.\d+) \(.*\), commit ([0-9a-f]{7,40})\b", line)
        if match:
            return match.group(1), match.group(2)
    raise AssertionError("CHANGELOG.md names no released version with its commit")


#: the earlier template version the update test starts from (TEMPLATE_OLD_VERSION: another ref;
#: empty: this working tree, updated to a later commit the test makes)
OLD_VERSION = os.environ.get("TEMPLATE_OLD_VERSION", previous_release()[1])

#: what a generated project runs here (`make test TESTS=…`: lint, types, docs, then these): the
#: config tests, every model x data option it kept builds and steps (its README and docs
#: commands are this repository's, run by tests/test_readme.py)
PROJECT_TESTS = "tests/test_configs.py"


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, **kw)
    assert done.returncode == 0, f"{cmd} in {cwd}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def working_tree_files() -> list[str]:
    """Every file git would commit here: tracked ones still on disk and untracked, not ignored."""
    out = run(["git", "ls-files", "-z", "-co", "--exclude-standard"], ROOT).stdout
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def commit_working_tree(dst: Path, message: str) -> str:
    """Make `dst` (a clone of this repository) hold exactly this working tree, committed."""
    for tracked in run(["git", "ls-files", "-z"], dst).stdout.split("\0"):
        if tracked:
            (dst / tracked).unlink(missing_ok=True)
    for name in working_tree_files():
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst / name)
    run(["git", "add", "-A"], dst)
    run(["git", *GIT_ID, "commit", "-q", "--allow-empty", "-m", message], dst)
    return run(["git", "rev-parse", "HEAD"], dst).stdout.strip()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A git clone of this repository whose HEAD is this working tree (uncommitted edits included)."""
    src = tmp_path_factory.mktemp("template") / "tpl"
    run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(src)], ROOT)
    commit_working_tree(src, "the working tree under test")
    return src


def generate(template: Path, dst: Path, answers: dict, ref: str | None = None) -> Path:
    data = [a for key, value in answers.items() for a in ("-d", f"{key}={str(value).lower()}")]
    # this working tree's commit unless told: copier would otherwise take the newest tag (v1.0.0)
    vcs = ["--vcs-ref", ref or "HEAD"]
    run(
        [str(COPIER), "copy", "--trust", "--defaults", "-q", *vcs, *data, str(template), str(dst)],
        dst.parent,
    )
    return dst


def is_text(data: bytes) -> bool:
    """What copier renders: a file that decodes as UTF-8 (anything else is copied byte for byte)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def rendered_files(project: Path) -> list[str]:
    return sorted(
        str(p.relative_to(project))
        for p in project.rglob("*")
        if p.is_file() and ".git" not in p.parts
    )


@pytest.mark.slow
def template_only(path: str) -> bool:
    """A file copier.yml's fixed `_exclude` entries keep out of every generated project."""
    entries = yaml.safe_load((ROOT / "copier.yml").read_text())["_exclude"]
    fixed = [e for e in entries if "<!--%" not in e]

    def matches(entry: str) -> bool:
        return fnmatch.fnmatch(path, entry) or path.startswith(entry.rstrip("/") + "/")

    kept = any(matches(e[1:]) for e in fixed if e.startswith("!"))
    return not kept and any(matches(e) for e in fixed if not e.startswith("!"))


def test_defaults_reproduce_this_repository(template, tmp_path):
    """All kept: every file is this repository's byte for byte, binaries included (text files with
    "\n" line endings: copier's Jinja rewrites CRLF), except the files that carry markers (those lose the marker lines), the template's own files and the library
    (core/: a generated project installs it, pinned)."""
    project = generate(template, tmp_path / "p", {})
    expected = [f for f in working_tree_files() if not template_only(f)]
    assert rendered_files(project) == sorted(expected)
    for name in expected:
        original, rendered = (ROOT / name).read_bytes(), (project / name).read_bytes()
        if name == SHOWS_THE_MARKERS:
            assert rendered == RAW_LINES.sub(b"", original)
        elif MARKERS.search(original):
            assert not MARKERS.search(rendered), name
        elif is_text(original):  # Jinja writes every line ending as "\n" (CRLF files too)
            assert rendered == original.replace(b"\r\n", b"\n"), name
        else:
            assert rendered == original, name
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["project_name"] == "my-project" and answers["_src_path"] == str(template)
    assert all(answers[key] is True for key in ALL_KEPT)
    assert 'name = "my-project"' in (project / "pyproject.toml").read_text()
    assert (project / "README.md").read_text().startswith("# my-project\n")
    workflow = yaml.safe_load((project / ".github/workflows/update-template.yml").read_text())
    assert "if" not in workflow["jobs"]["update"]  # runs in the generated project


def test_the_plain_clone_shows_no_template_syntax_outside_comments():
    """The plain clone is a working project: markers sit on comment lines or in HTML comments, and
    this repository's update workflow never runs here."""
    for name in working_tree_files():
        if name in (
            ".copier-answers.yml",
            "copier.yml",
            "tests/test_template.py",
            SHOWS_THE_MARKERS,
        ):
            continue
        data = (ROOT / name).read_bytes()
        for line in data.splitlines():
            if b"<!--=" in line or b"<!--%" in line:
                assert line.lstrip().startswith((b"<!--", b"#| ")), (name, line)
        lines = data.decode("utf-8", errors="replace").split("\n")
        for number, (line, following) in enumerate(zip(lines, lines[1:], strict=False), 1):
            # a Jinja line statement swallows the blank lines after it: the output would lose them
            assert not (line.lstrip().startswith("# %") and not following.strip()), (name, number)
    workflow = yaml.safe_load((ROOT / ".github/workflows/update-template.yml").read_text())
    assert workflow["jobs"]["update"]["if"] is False


@pytest.mark.slow
def test_minimal_selection_leaves_out_every_unselected_part(template, tmp_path):
    project = generate(template, tmp_path / "tiny", {**MINIMAL, "project_name": "tiny"})
    files = set(rendered_files(project))
    for absent in (
        "src/models/gan.py",
        "src/models/autoencoder.py",
        "src/models/regressor.py",
        "src/data/torchvision_datasets.py",
        "configs/data/mnist.yaml",
        "configs/data/csv.yaml",
        "configs/data/image_folder.yaml",
        "configs/hydra/launcher/slurm.yaml",
        "configs/hydra/launcher/gpu_pool.yaml",
        "configs/logger/mlflow.yaml",
        "configs/callbacks/optuna_pruning.yaml",
        "tests/test_optuna.py",
        "tests/test_slurm.py",
        "scripts/slurm/train.sbatch",
        "bench/bench_train.py",
    ):
        assert absent not in files, absent
    assert not (project / "bench").exists() and not (project / "configs/hparams_search").exists()
    for kept in ("src/models/classifier.py", "configs/data/digits.yaml", "configs/model/mlp.yaml"):
        assert kept in files, kept
    requirements = (project / "requirements.txt").read_text()
    assert (
        "optuna" not in requirements
        and "mlflow" not in requirements
        and "wandb" not in requirements
    )
    makefile = (project / "Makefile").read_text()
    assert "search:" not in makefile and "bench:" not in makefile and "update-template:" in makefile
    readme = (project / "README.md").read_text()
    assert "## Run on a cluster" not in readme and "## Train on a table" not in readme
    for name in files - {SHOWS_THE_MARKERS}:
        assert not MARKERS.search((project / name).read_bytes()), name


def test_a_bad_project_name_is_refused(template, tmp_path):
    done = subprocess.run(
        [
            str(COPIER),
            "copy",
            "--defaults",
            "-q",
            "-d",
            "project_name=my project",
            str(template),
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "letters, digits" in done.stderr
    assert not (tmp_path / "x" / "Makefile").exists()


def give_venv(project: Path) -> None:
    """A hardlinked copy of this repository's .venv without this repository's own editable install
    (the project's Makefile installs the project's); entry scripts get their own shebang."""
    venv = project / ".venv"
    run(["cp", "-al", str(ROOT / ".venv"), str(venv)], project)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for editable in [
        *site.glob("__editable__*lightning_hydra_starter*"),
        *site.glob("lightning_hydra_starter*.dist-info"),
    ]:
        shutil.rmtree(editable) if editable.is_dir() else editable.unlink()
    old = f"#!{ROOT / '.venv' / 'bin' / 'python'}".encode()
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink() and script.read_bytes()[: len(old)] == old:
            data = script.read_bytes().replace(old, f"#!{venv / 'bin' / 'python'}".encode(), 1)
            script.unlink()  # a new file: the hardlinked one is shared with this repository's venv
            script.write_bytes(data)
            script.chmod(0o755)


def make(project: Path, *args: str, timeout: int = 900) -> str:
    return run(["make", *args], project, timeout=timeout).stdout


@pytest.mark.slow
# everything kept: the update test below generates it, updates it, trains and tests it
@pytest.mark.parametrize("answers", [MINIMAL, MIXED], ids=["minimal", "mixed"])
def test_generated_project_trains_and_tests(template, tmp_path, answers):
    project = generate(template, tmp_path / "proj", answers)
    give_venv(project)
    out = make(project, "train", "ARGS=trainer.max_epochs=2")
    assert "test/acc" in out
    # the minimal project runs its whole suite (README and docs commands included), as issue 22's
    # acceptance types it: a command for a part it left out must be skipped, not fail
    tests = "tests" if answers is MINIMAL else PROJECT_TESTS
    make(project, "test", f"TESTS={tests}", "ARGS=-q -p no:cacheprovider")


def user_edits(project: Path) -> None:
    """What a user does to a generated project: a model of their own with its config, a changed
    default, a test of their own, an example deleted; committed (copier update needs a clean tree)."""
    (project / "src/models/nets/my_net.py").write_text(
        '"""My own net."""\n\nfrom torch import nn\n\n\nclass MyNet(nn.Sequential):\n'
        "    def __init__(self, input_shape: list[int], num_classes: int) -> None:\n"
        "        n = 1\n        for d in input_shape:\n            n *= d\n"
        "        super().__init__(nn.Flatten(), nn.Linear(n, num_classes))\n"
    )
    (project / "configs/model/my_net.yaml").write_text(
        "# my own net, in the classifier\n_target_: src.models.classifier.Classifier\n"
        "optimizer: ${optimizer}\nscheduler: ${scheduler}\nmonitor: ${monitor.metric}\n"
        "num_classes: ${data.num_classes}\nnet:\n  _target_: src.models.nets.my_net.MyNet\n"
        "  input_shape: ${data.input_shape}\n  num_classes: ${data.num_classes}\n"
    )
    train = (project / "configs/train.yaml").read_text()
    (project / "configs/train.yaml").write_text(train.replace("\nseed: 42\n", "\nseed: 7\n"))
    (project / "tests/test_mine.py").write_text(
        '"""My own test."""\n\nimport torch\n\nfrom src.models.nets.my_net import MyNet\n\n\n'
        "def test_my_net():\n    assert MyNet([1, 8, 8], 10)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)\n"
    )
    for example in ("src/models/gan.py", "configs/model/gan.yaml", "tests/test_example_gan.py"):
        (project / example).unlink(missing_ok=True)  # the GAN example; its tests, if any
    run(["git", "init", "-q"], project)
    run(["git", "add", "-A"], project)
    run(["git", *GIT_ID, "commit", "-q", "-m", "generated, then my edits"], project)


def later_template_version(source: Path) -> None:
    """A template change of the kinds a release brings: a new config, an edited config and
    Makefile help line (the user edited the same files, other lines), an edited example test."""
    (source / "configs/optimizer/adamw_later.yaml").write_text(
        "_target_: torch.optim.AdamW\n_partial_: true\nlr: 0.001\nweight_decay: 0.01\n"
    )
    train = (source / "configs/train.yaml").read_text()
    (source / "configs/train.yaml").write_text(
        train.replace("\ntest: true\n", "\ntest: true  # tested later\n")
    )
    makefile = (source / "Makefile").read_text()
    (source / "Makefile").write_text(
        makefile.replace("## show this help", "## show this help (later)")
    )
    run(["git", "add", "-A"], source)
    run(["git", *GIT_ID, "commit", "-q", "-m", "a later template version"], source)


@pytest.mark.slow
def test_update_from_an_earlier_version_keeps_the_users_edits(template, tmp_path):
    """From OLD_VERSION (an earlier release) to this working tree; without one, from this working
    tree to a later template commit made here that edits files the user also edited, elsewhere."""
    source = tmp_path / "tpl"
    run(["git", "clone", "-q", str(template), str(source)], tmp_path)
    project = generate(source, tmp_path / "proj", ALL_KEPT, ref=OLD_VERSION or "HEAD")
    give_venv(project)
    make(project, "install")  # the old version's library pin, installed as the user had it
    user_edits(project)
    if not OLD_VERSION:
        later_template_version(source)
    # what a user types; a released project takes the newest tag, this test the newest commit
    make(project, "update-template", "ARGS=--vcs-ref HEAD -q")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (
        answers["_commit"]
        != yaml.safe_load(run(["git", "show", "HEAD:.copier-answers.yml"], project).stdout)[
            "_commit"
        ]
    )
    if OLD_VERSION:  # what the newer template brings: its changelog's entries
        newest = re.search(r"^## \d+\.\d+\.\d+ .*$", (ROOT / "CHANGELOG.md").read_text(), re.M)
        assert newest and newest.group(0) in (project / "CHANGELOG.md").read_text()
    else:
        assert (project / "configs/optimizer/adamw_later.yaml").is_file()
        assert "test: true  # tested later" in (project / "configs/train.yaml").read_text()
        assert "show this help (later)" in (project / "Makefile").read_text()
    pinned = run(["git", "rev-parse", "HEAD"], source).stdout.strip()
    assert f"@{pinned}\\#subdirectory=core" in (project / "Makefile").read_text()  # the new pin
    assert (project / "src/models/nets/my_net.py").is_file() and (
        project / "tests/test_mine.py"
    ).is_file()
    assert "\nseed: 7\n" in (project / "configs/train.yaml").read_text()
    assert not (project / "src/models/gan.py").exists()
    assert not (project / "tests/test_example_gan.py").exists()
    conflicted = subprocess.run(
        ["git", "grep", "-l", "-e", "^<<<<<<< ", "-e", "^>>>>>>> "],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert conflicted.stdout == "", conflicted.stdout
    installed = json.loads(
        next(
            (project / ".venv/lib").glob(
                "python3*/site-packages/expkit-*.dist-info/direct_url.json"
            )
        ).read_text()
    )
    assert installed["vcs_info"]["commit_id"] == pinned  # update-template upgraded the library
    assert "test/acc" in make(project, "train", "ARGS=trainer.max_epochs=2")
    make(
        project, "test", f"TESTS={PROJECT_TESTS} tests/test_mine.py", "ARGS=-q -p no:cacheprovider"
    )


def test_update_template_outside_a_generated_project_is_one_line():
    """This repository's .copier-answers.yml is the template of one (no _src_path): refused."""
    done = subprocess.run(
        ["make", "-s", "update-template"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stdout.strip() == (
        "no .copier-answers.yml with _src_path here: update-template works in a project "
        "generated with copier (docs/generate-and-update.md)"
    )
