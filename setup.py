"""Packages of the distribution: pyproject.toml's packages.find cannot map conf/ to harmony_cli.conf.

The Hydra configs ship as the data-only package ``harmony_cli.conf`` (and one sub-package per
config group), so an installed harmony finds them beside its code.
"""
from setuptools import find_namespace_packages, find_packages, setup

CODE = find_packages(include=["harmony_cli*", "lightning_modules*", "webui*"])
# Folders of data files only (the shipped base weights, the practice pair's PNGs): packages of their own,
# so that setuptools ships them without a warning in the install's log.
DATA_FOLDERS = ["lightning_modules.backbones.shipped", "webui.practice_pair"]
CONFIGS = ["harmony_cli.conf", *(f"harmony_cli.conf.{group}" for group in find_namespace_packages(where="conf"))]
# The page's files beside its code: Streamlit settings, the pair component.
PAGE_FILES = [".streamlit/config.toml", "pair.js", "pair.css"]

setup(
    packages=[*CODE, *DATA_FOLDERS, *CONFIGS],
    package_dir={"harmony_cli.conf": "conf"},
    # the embedded default's trained base model (lightning_modules/backbones/shipped.py)
    package_data={**{name: ["*.yaml"] for name in CONFIGS}, "webui": PAGE_FILES,
                  "webui.practice_pair": ["*.png"], "lightning_modules.backbones.shipped": ["*.pt"]},
)
