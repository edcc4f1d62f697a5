"""Where harmony's Hydra configs live, composing them from code, and Hydra's errors as one line:
:func:`exit_on_user_error` runs every command (the CLI and the Hydra finetune job).

The configs ship inside the package (``harmony_cli/conf`` in a wheel, ``conf/`` in a checkout);
``HARMONY_CONF`` points every command at another folder of the same layout.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from .errors import USER_ERROR_STATUS, UserError, print_error

CONFIG_NAME = "config"
CONF_ENV = "HARMONY_CONF"
_PACKAGE = Path(__file__).resolve().parent
# Hydra plugins that ship as optional extras: (group, option) -> the extra that installs them.
PLUGIN_EXTRAS = {
    ("hydra/launcher", "joblib"): "joblib",
    ("hydra/launcher", "submitit_slurm"): "slurm",
    ("hydra/launcher", "submitit_local"): "slurm",
    ("hydra/sweeper", "optuna"): "optuna",
}


class ConfigError(UserError):
    """An override or config folder that does not compose."""


def config_dir() -> Path:
    """``$HARMONY_CONF``, else the configs installed with the package, else the checkout's ``conf/``."""
    if os.environ.get(CONF_ENV):
        return Path(os.environ[CONF_ENV]).expanduser().resolve()
    installed = _PACKAGE / "conf"  # a wheel maps conf/ to harmony_cli/conf (pyproject package-dir)
    return installed if installed.is_dir() else _PACKAGE.parent / "conf"


def checked_config_dir() -> Path:
    """:func:`config_dir`, or a one-line error naming the folder and ``HARMONY_CONF``."""
    folder = config_dir()
    if not (folder / f"{CONFIG_NAME}.yaml").is_file():
        source = f"${CONF_ENV}" if os.environ.get(CONF_ENV) else "the installed package"
        raise ConfigError(f"no harmony config folder at {folder} (from {source}): point {CONF_ENV} at a folder "
                          f"holding {CONFIG_NAME}.yaml and the config groups, or unset it to use the installed ones")
    return folder


# The config folder of this process (tests and docs read options from it).
CONFIG_DIR = config_dir()


def _missing_option_line(exc) -> str | None:
    group, _, value = (exc.missing_cfg_file or "").rpartition("/")
    if not group:
        return None
    extra = PLUGIN_EXTRAS.get((group, value))
    if extra:
        return f"{group}={value} needs a Hydra plugin: pip install 'harmony[{extra}]'"
    options = ", ".join(sorted(exc.options or ())) or "(none)"
    return f"unknown {group} {value!r}: choose one of {options}"


def config_error(exc: BaseException) -> ConfigError | None:
    """Hydra's composition error ``exc`` as a one-line :class:`ConfigError` (None: not one)."""
    if isinstance(exc, MissingConfigException):
        line = _missing_option_line(exc)
        if line is None:
            checked_config_dir()  # a missing config folder names itself
            line = str(exc).strip().splitlines()[0]
        return ConfigError(line)
    if isinstance(exc, OverrideParseException):
        return ConfigError(f"cannot read the override {exc.override!r}: write overrides as key=value "
                           f"(quote values with spaces or commas)")
    if isinstance(exc, ConfigCompositionException):
        unknown_key = getattr(exc.__cause__, "full_key", None)  # OmegaConf's error for a key not in the config
        if unknown_key:
            return ConfigError(f"unknown config option {unknown_key!r}: check its spelling "
                               f"(`harmony <command> --cfg job` prints every option)")
        # Hydra's first line says what is wrong, its second how to fix it ("Either remove + prefix: ...")
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return ConfigError(" ".join(lines[:2]))
    return None


def compose_config(overrides: list[str] | None = None, task: str = "finetune", resolve: bool = False) -> DictConfig:
    """Compose the root config with ``overrides`` (single run, no sweep syntax).

    Raises :class:`ConfigError` with one line when it does not compose.
    """
    folder = checked_config_dir()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=[f"task={task}", *(overrides or [])])
        if resolve:
            OmegaConf.resolve(cfg)
    except Exception as exc:  # Hydra raises several types for bad overrides: each becomes one line
        error = config_error(exc)
        if error is None:
            raise
        raise error from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


def find_user_error(exc: BaseException | None) -> UserError | None:
    """The user error behind ``exc``: itself, the cause of a wrapper (Hydra's ``instantiate``
    wraps what a ``_target_`` raises), a ``???`` config value left unset, or an override that
    does not compose (Hydra's composition errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        if isinstance(exc, MissingMandatoryValue) and exc.full_key:
            return UserError(f"config value {exc.full_key} must be set: add {exc.full_key}=... to the command")
        if type(exc).__module__.startswith("hydra."):
            converted = config_error(exc)
            if converted is not None:
                return converted
        seen.add(id(exc))
        exc = exc.__cause__
    return None


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Run the body; a user error prints one line and exits with status 2, anything else propagates.

    The whole CLI runs inside it; a Hydra job runs inside it too, since Hydra would otherwise
    add its own lines about the failed job.
    """
    try:
        yield
    except Exception as exc:
        error = find_user_error(exc)
        if error is None:
            raise
        print_error(error)
        sys.exit(USER_ERROR_STATUS)
