"""`python -m rl_audio.pipeline` works from an installed (non-editable) package, not only from a source checkout:
the wheel carries the top-level `recipes/` folder as `rl_audio/recipes/`, the pipeline finds its default recipes
there when there is no checkout, and it writes its outputs under the working directory."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from rl_audio import pipeline

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").rglob("*.yaml"))


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_packages_list_matches_the_source_tree():
    """pyproject.toml lists the packages (a found list cannot map recipes/ into rl_audio): a new subpackage must be
    added there, or the wheel would silently lack it."""
    listed = set(_setuptools_config()["packages"])
    found = set(find_packages(str(ROOT), include=["rl_audio*", "rewards*"]))
    assert listed - {"rl_audio.recipes"} == found, (
        f"pyproject.toml [tool.setuptools] packages lacks {sorted(found - listed)} and lists {sorted(listed - found)}"
        " that are not packages: update the list"
    )
    assert _setuptools_config()["package-dir"] == {"rl_audio.recipes": "recipes"}


def test_package_data_covers_every_recipe():
    globs = _setuptools_config()["package-data"]["rl_audio.recipes"]
    missing = [r for r in RECIPES if not any(fnmatch.fnmatch(r.removeprefix("recipes/"), g) for g in globs)]
    assert RECIPES and not missing, f"recipes not shipped in the wheel by {globs}: {missing}"


def test_recipe_path_prefers_the_given_file(tmp_path, monkeypatch):
    mine = tmp_path / "recipes" / "cpu" / "pipeline_sft.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("max_steps: 1\n")
    monkeypatch.chdir(tmp_path)
    assert pipeline.recipe_path("recipes/cpu/pipeline_sft.yaml") == mine.resolve()


def test_recipe_path_in_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout's root: the shipped name is still found
    assert pipeline.recipe_path("recipes/cpu/pipeline_grpo.yaml") == ROOT / "recipes/cpu/pipeline_grpo.yaml"


def test_recipe_path_without_a_checkout_reads_the_package(tmp_path, monkeypatch):
    site = tmp_path / "site"
    shipped = site / "rl_audio" / "recipes" / "cpu" / "pipeline_sft.yaml"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("max_steps: 1\n")
    monkeypatch.setattr(pipeline, "PACKAGE", site / "rl_audio")
    monkeypatch.setattr(pipeline, "ROOT", site)  # no pyproject.toml: not a checkout
    monkeypatch.chdir(tmp_path)
    assert pipeline.recipe_path("recipes/cpu/pipeline_sft.yaml") == shipped
    with pytest.raises(FileNotFoundError, match=r"recipe 'recipes/cpu/none.yaml' not found .*give the path"):
        pipeline.recipe_path("recipes/cpu/none.yaml")


def test_plan_runs_nothing_and_writes_under_the_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pipeline.main(["--plan", "--quick", "--out", "o"])
    printed = capsys.readouterr().out
    assert f"rl_audio.sft {ROOT / 'recipes/cpu/pipeline_sft.yaml'} --output_dir {tmp_path / 'o' / 'sft'}" in printed
    assert f"--model_name_or_path {tmp_path / 'o' / 'sft' / 'final'}" in printed
    assert not (tmp_path / "o").exists()


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources (so no build/ or egg-info lands in the checkout), offline."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("rl_audio", "rewards", "recipes"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."]
    subprocess.run(cmd, cwd=src, check=True, capture_output=True, timeout=120)
    (wheel,) = wheels.glob("rl_audio-*.whl")
    return wheel


@pytest.mark.slow
def test_installed_wheel_finds_its_recipes(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [r for r in RECIPES if "rl_audio/" + r not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert "rl_audio/pipeline.py" in names and "rewards/__init__.py" in names

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=120)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = "import rl_audio.pipeline as p; print(p.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(site / "rl_audio" / "pipeline.py"), where.stdout + where.stderr
    plan = subprocess.run(
        [sys.executable, "-m", "rl_audio.pipeline", "--plan", "--quick", "--out", "o"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    shipped = site / "rl_audio" / "recipes" / "cpu"
    assert f"rl_audio.sft {shipped / 'pipeline_sft.yaml'} --output_dir {work / 'o' / 'sft'}" in plan.stdout
    assert f"rl_audio.grpo {shipped / 'pipeline_grpo.yaml'}" in plan.stdout
    assert not (work / "o").exists() and not (site / "outputs").exists()
