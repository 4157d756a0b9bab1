"""Configuration that crosses folders: where models, inputs, outputs and extra node packs live.

Precedence, highest first: explicit overrides (CLI flags) > environment variables > the config file >
defaults under the user's data directory. Settings are read when asked for, never cached, so a test or the
eval runner can point NodeWeaver at other folders by changing the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from runtime.errors import NodeWeaverError

ENV_MODELS_DIR = "NODEWEAVER_MODELS_DIR"
ENV_INPUT_DIR = "NODEWEAVER_INPUT_DIR"
ENV_OUTPUT_DIR = "NODEWEAVER_OUTPUT_DIR"
ENV_CUSTOM_NODES = "NODEWEAVER_CUSTOM_NODES"
ENV_CONFIG = "NODEWEAVER_CONFIG"
ENV_DATA_DIR = "NODEWEAVER_DATA_DIR"
ENV_COMFYUI_DIR = "NODEWEAVER_COMFYUI_DIR"


class ConfigError(NodeWeaverError, ValueError):
    """The config file exists but cannot be read; reported to the user, never a traceback."""

    kind = "config_error"


class Settings(BaseModel):
    """Resolved folders; every path is absolute."""

    data_dir: Path
    models_dir: Path
    input_dir: Path
    output_dir: Path
    custom_nodes: list[Path] = Field(default_factory=list)
    comfyui_dir: Path | None = None  # an existing ComfyUI installation whose models/ are searched too
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)


def default_data_dir() -> Path:
    """The user's data directory (XDG on Linux), overridable with NODEWEAVER_DATA_DIR."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser().resolve()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(base) / "nodeweaver").resolve()


def config_file_path() -> Path:
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nodeweaver" / "config.toml"


def read_config_file(path: Path | None = None) -> dict[str, Any]:
    """The config file's table, or {} when there is none."""
    path = path or config_file_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def _split_paths(value: str) -> list[str]:
    return [p for p in value.split(os.pathsep) if p.strip()]


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Resolve settings from overrides, environment, config file and defaults."""
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, [], "")}
    file_cfg = read_config_file()
    folders = file_cfg.get("folders", file_cfg)
    data_dir = default_data_dir()

    def pick(key: str, env: str, default: Path) -> Path:
        raw = overrides.get(key) or os.environ.get(env) or folders.get(key)
        return Path(raw).expanduser().resolve() if raw else default

    raw_comfy = overrides.get("comfyui_dir") or os.environ.get(ENV_COMFYUI_DIR) or folders.get("comfyui_dir")
    custom: list[str] = []
    if "custom_nodes" in overrides:
        raw_custom = overrides["custom_nodes"]
        custom = list(raw_custom) if isinstance(raw_custom, list | tuple) else _split_paths(str(raw_custom))
    elif os.environ.get(ENV_CUSTOM_NODES):
        custom = _split_paths(os.environ[ENV_CUSTOM_NODES])
    elif folders.get("custom_nodes"):
        raw_custom = folders["custom_nodes"]
        custom = list(raw_custom) if isinstance(raw_custom, list) else _split_paths(str(raw_custom))
    return Settings(
        data_dir=data_dir,
        models_dir=pick("models_dir", ENV_MODELS_DIR, data_dir / "models"),
        input_dir=pick("input_dir", ENV_INPUT_DIR, data_dir / "input"),
        output_dir=pick("output_dir", ENV_OUTPUT_DIR, data_dir / "output"),
        custom_nodes=[Path(p).expanduser().resolve() for p in custom],
        comfyui_dir=Path(raw_comfy).expanduser().resolve() if raw_comfy else None,
        providers=dict(file_cfg.get("providers", {})),
    )


def apply_overrides_to_env(overrides: dict[str, Any]) -> None:
    """Make CLI flags visible to everything that reads settings later in this process."""
    mapping = {
        "comfyui_dir": ENV_COMFYUI_DIR,
        "models_dir": ENV_MODELS_DIR,
        "input_dir": ENV_INPUT_DIR,
        "output_dir": ENV_OUTPUT_DIR,
    }
    for key, env in mapping.items():
        if overrides.get(key):
            os.environ[env] = str(Path(overrides[key]).expanduser().resolve())
    if overrides.get("custom_nodes"):
        os.environ[ENV_CUSTOM_NODES] = os.pathsep.join(str(p) for p in overrides["custom_nodes"])
