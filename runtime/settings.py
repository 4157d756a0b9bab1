"""NodeWeaver's one settings object: folders, providers, server bounds and engine limits.

Precedence, highest first: explicit values (CLI flags) > environment variables (`NODEWEAVER_MODELS_DIR`,
nested sections as `NODEWEAVER_ENGINE__NODE_TIMEOUT`) > the config file (TOML; folder keys under `[folders]`,
then `[server]`, `[engine]`, `[providers.NAME]`, `[comfyui]`) > defaults under the user's data directory.

An entry point (the CLI) builds the settings once with `load_settings(overrides)`, installs them with
`activate()` and passes them to the objects it creates; code below it asks `current()`. When nothing was
activated (library use, tests), `current()` reads the environment afresh on every call, so pointing
NodeWeaver at other folders is a matter of changing the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from runtime.errors import NodeWeaverError

ENV_MODELS_DIR = "NODEWEAVER_MODELS_DIR"
ENV_INPUT_DIR = "NODEWEAVER_INPUT_DIR"
ENV_OUTPUT_DIR = "NODEWEAVER_OUTPUT_DIR"
ENV_CUSTOM_NODES = "NODEWEAVER_CUSTOM_NODES"
ENV_CONFIG = "NODEWEAVER_CONFIG"
ENV_DATA_DIR = "NODEWEAVER_DATA_DIR"
ENV_COMFYUI_DIR = "NODEWEAVER_COMFYUI_DIR"


class ConfigError(NodeWeaverError, ValueError):
    """The config file or a setting cannot be read; reported to the user, never a traceback."""

    kind = "config_error"


class ServerSettings(BaseModel):
    """Bounds on what one request may cost, so no client can freeze or exhaust the server."""

    max_body_bytes: int = Field(100 * 1024 * 1024, ge=1024, description="largest request body (ComfyUI: 100 MiB)")
    max_json_depth: int = Field(256, ge=8, le=900, description="deepest JSON nesting accepted in a request")
    max_plan_chars: int = Field(20_000, ge=100, description="longest request in words the planner accepts")
    allowed_origins: list[str] = Field(default_factory=list,
                                       description="browser origins allowed besides the server's own")
    history_scope: Literal["run", "all"] = Field(
        "run", description="what ComfyUI's /history lists: this server run's jobs, as ComfyUI (whose history "
                           "lives in memory) does, or every persisted job (also: /history?all=true)")


class EngineSettings(BaseModel):
    """Limits of the executor, and where it runs (here, or on Ray workers)."""

    node_timeout: float | None = Field(None, gt=0, description="seconds any one node may run (none: no limit)")
    output_cache_bytes: int | None = Field(None, ge=0,
                                           description="output cache budget (none: a share of available memory)")
    device: Literal["cuda", "mps", "cpu"] | None = Field(None, description="force a torch device "
                                                                         "(none: the best available)")
    cache: Literal["lru", "none", "classic"] = Field("lru", description="output cache policy, as ComfyUI's "
                                                                         "--cache-lru/--cache-none/--cache-classic")
    cache_lru_size: int | None = Field(None, ge=0, description="most entries the output cache keeps (none: "
                                                               "bounded by output_cache_bytes only)")
    max_input_frames: int | None = Field(None, ge=1, description="frames one image input may have "
                                                                 "(none: LoadImage's default, 1024)")
    max_input_pixels: int | None = Field(None, ge=1, description="pixels of one image input, all frames together "
                                                                 "(none: LoadImage's default, 32 Mi)")
    # where jobs run: this process, or Ray worker actors (engine/ray_backend.py; the `ray` extra)
    backend: Literal["local", "ray"] = Field("local", description="run jobs here, or on a Ray cluster's workers")
    ray_address: str | None = Field(None, description="Ray cluster to join: auto, host:6379, ray://host:10001, "
                                                      "or local (none: a cluster of this machine)")
    ray_workers: int | None = Field(None, ge=1, description="Ray worker actors (none: one per GPU, else 1)")
    ray_gpus_per_worker: float | None = Field(None, ge=0, description="GPUs each Ray worker takes (none: 1 "
                                                                      "when the cluster has GPUs, else 0)")
    ray_retries: int = Field(1, ge=0, description="times a job whose Ray worker died runs again elsewhere")


class ComfyUISettings(BaseModel):
    """Remote ComfyUI servers whose nodes join the catalog and whose GPUs run the jobs that need them."""

    urls: Annotated[list[str], NoDecode] = Field(default_factory=list, description="ComfyUI servers "
                                                 "(http://host:port); env: comma separated")
    # e.g. an auth header for a ComfyUI behind a proxy: secret, so never shown in a repr or a log line
    headers: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict, repr=False,
                                                         description="HTTP headers sent to every server")
    timeout: float = Field(30.0, gt=0, description="seconds one HTTP request to a server may take")
    lost_after: float = Field(60.0, gt=0, description="seconds without an answer from a server before its "
                                                      "running job fails")
    # remote: a job whose nodes (and files) a server has all runs there, on the GPU and models it was set up
    # for; local keeps such a job here. Nodes only NodeWeaver has run here either way.
    prefer: Literal["local", "remote"] = Field("remote", description="where a job every node of which runs "
                                                                     "in both places goes")

    @field_validator("urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> list[str]:
        """A list, or (environment) one string: JSON, or URLs separated by commas or spaces."""
        if isinstance(value, str):
            text = value.strip()
            value = _json_value(text, list) if text.startswith("[") else re.split(r"[,\s]+", text)
        if not isinstance(value, list | tuple):
            raise ValueError("expected a list of URLs")
        urls = []
        for item in value:
            url = str(item).strip().rstrip("/")
            if not url:
                continue
            if not re.match(r"^https?://[^\s/]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL")
            if url not in urls:
                urls.append(url)
        return urls

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> dict[str, str]:
        """A table, or (flags, environment) 'Name: value' lines / a JSON object."""
        if isinstance(value, str):
            text = value.strip()
            value = _json_value(text, dict) if text.startswith("{") else [line for line in text.splitlines()]
        if isinstance(value, list | tuple):
            value = dict(parse_header(str(line)) for line in value if str(line).strip())
        if not isinstance(value, dict):
            raise ValueError("expected a table of header names and values")
        return {str(k): str(v) for k, v in value.items()}


def parse_header(line: str) -> tuple[str, str]:
    """'Name: value' → (name, value); the value is not echoed in the error (it may be a secret)."""
    name, sep, value = line.partition(":")
    if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name.strip()):
        raise ValueError(f"a header must read 'Name: value' (got a line starting {line.strip()[:12]!r})")
    return name.strip(), value.strip()


def _json_value(text: str, kind: type) -> Any:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}")
    return value


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


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The TOML config file, with the folder keys lifted out of `[folders]` (older files have them on top)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ returns the whole table at once

    def __call__(self) -> dict[str, Any]:
        table = read_config_file()
        folders = table.get("folders", table)
        values = {k: folders[k] for k in ("data_dir", "models_dir", "input_dir", "output_dir", "temp_dir",
                                          "custom_nodes", "comfyui_dir", "extra_model_paths",
                                          "default_model_paths") if k in folders}
        for section in ("server", "engine", "providers", "comfyui"):
            if isinstance(table.get(section), dict):
                values[section] = table[section]
        return values


def _split_paths(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p for p in value.split(os.pathsep) if p.strip()]
    return [str(p) for p in value or []]


class Settings(BaseSettings):
    """Resolved settings; every path is absolute."""

    model_config = SettingsConfigDict(env_prefix="NODEWEAVER_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    models_dir: Path | None = None
    input_dir: Path | None = None
    output_dir: Path | None = None
    temp_dir: Path | None = None  # previews (ComfyUI's temp folder); default: data_dir/temp
    custom_nodes: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    comfyui_dir: Path | None = None  # an existing ComfyUI installation whose models/ are searched too
    # more folders per model kind (ComfyUI's extra_model_paths.yaml): searched after ours, or before ours
    # (default_model_paths: its `is_default` sections, whose folders ComfyUI puts first)
    extra_model_paths: dict[str, list[Path]] = Field(default_factory=dict)
    default_model_paths: dict[str, list[Path]] = Field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    comfyui: ComfyUISettings = Field(default_factory=ComfyUISettings)

    @field_validator("custom_nodes", mode="before")
    @classmethod
    def _paths_list(cls, value: Any) -> list[str]:
        return _split_paths(value)

    @model_validator(mode="after")
    def _resolve_folders(self) -> Settings:
        """Folders default to the data directory's subfolders; every path is made absolute once, here."""
        self.data_dir = self.data_dir.expanduser().resolve()
        for name in ("models", "input", "output", "temp"):
            value = getattr(self, f"{name}_dir")
            setattr(self, f"{name}_dir", (value.expanduser().resolve() if value else self.data_dir / name))
        self.custom_nodes = [p.expanduser().resolve() for p in self.custom_nodes]
        if self.comfyui_dir is not None:
            self.comfyui_dir = self.comfyui_dir.expanduser().resolve()
        for name in ("extra_model_paths", "default_model_paths"):
            setattr(self, name, {kind: [p.expanduser().resolve() for p in paths]
                                 for kind, paths in getattr(self, name).items()})
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        return init_settings, env_settings, _ConfigFileSource(settings_cls)


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build settings from explicit values (None and empty values are ignored), environment, file, defaults."""
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, [], "")}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None


_active: Settings | None = None


def activate(settings: Settings | None) -> None:
    """Install the settings an entry point built, for everything below it in this process (None: uninstall)."""
    global _active
    _active = settings


def current() -> Settings:
    """The active settings, or (when no entry point activated any) settings read afresh."""
    return _active if _active is not None else load_settings()


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Activate `settings` for a block, then restore what was active (the eval runner points NodeWeaver at
    its scratch folders this way)."""
    global _active
    previous = _active
    _active = settings
    try:
        yield settings
    finally:
        _active = previous
