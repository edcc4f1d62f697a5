"""Maps conf/ to the package harmony_cli.conf (pyproject.toml's packages.find cannot add a renamed folder)."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["harmony_cli*", "lightning_modules*", "webui*"]), "harmony_cli.conf"],
    package_dir={"harmony_cli.conf": "conf"},
)
