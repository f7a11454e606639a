"""The daemon's settings: the TOML file, then the environment, then flags, validated once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.errors import ConfigError

DEFAULT_CONTROL_PLANE_URL = "https://api.host.langchain.com"
DEFAULT_PORT = 8765

# Each key the config file may hold, and the environment variable that overrides it.
ENVIRONMENT: dict[str, str] = {
    "control_plane_url": "OAUTH_BRIDGE_CONTROL_PLANE_URL",
    "host": "OAUTH_BRIDGE_HOST",
    "port": "OAUTH_BRIDGE_PORT",
    "workspace_id": "LANGSMITH_WORKSPACE_ID",
    "log_level": "OAUTH_BRIDGE_LOG_LEVEL",
    "pending_limit": "OAUTH_BRIDGE_PENDING_LIMIT",
    "retention_seconds": "OAUTH_BRIDGE_RETENTION_SECONDS",
    "success_url": "OAUTH_BRIDGE_SUCCESS_URL",
    "connect_timeout_seconds": "OAUTH_BRIDGE_CONNECT_TIMEOUT_SECONDS",
    "request_timeout_seconds": "OAUTH_BRIDGE_REQUEST_TIMEOUT_SECONDS",
    "forward_deadline_seconds": "OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS",
    "shutdown_grace_seconds": "OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS",
    "idle_exit_seconds": "OAUTH_BRIDGE_IDLE_EXIT_SECONDS",
    "connection_idle_seconds": "OAUTH_BRIDGE_CONNECTION_IDLE_SECONDS",
    "allow_insecure_control_plane": "OAUTH_BRIDGE_ALLOW_INSECURE_CONTROL_PLANE",
    "callback": "OAUTH_BRIDGE_CALLBACK",
}
# The serve options whose name is not the key's.
FLAGS = {"control_plane_url": "--control-plane", "idle_exit_seconds": "--idle-exit"}
# Keys whose TOML value must be a number or a boolean, never a string: a quoted
# `port = "48770"` is a mistake to report, not to coerce (the environment is all strings).
NOT_STRINGS = (
    "port",
    "pending_limit",
    "retention_seconds",
    "connect_timeout_seconds",
    "request_timeout_seconds",
    "forward_deadline_seconds",
    "shutdown_grace_seconds",
    "idle_exit_seconds",
    "connection_idle_seconds",
    "allow_insecure_control_plane",
)
# Secrets come from the environment directly, or from a file named in the config:
# never from the config file itself, which tends to end up in dotfile repositories.
API_KEY_ENV = "LANGSMITH_API_KEY"
BEARER_TOKEN_ENV = "OAUTH_BRIDGE_BEARER_TOKEN"  # noqa: S105  # a variable name, not a token

Seconds = Annotated[float, Field(gt=0, le=3600)]


class Settings(BaseModel):
    """Validated configuration; see config.example.toml for what each key means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    control_plane_url: AnyHttpUrl = AnyHttpUrl(DEFAULT_CONTROL_PLANE_URL)
    host: str = "localhost"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    api_key_file: Path | None = None
    bearer_token_file: Path | None = None
    workspace_id: str | None = Field(default=None, min_length=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    pending_limit: int = Field(default=1000, ge=1, le=1_000_000)
    # At least a minute: the result page the browser is redirected to must still find it.
    retention_seconds: float = Field(default=900, ge=60, le=86400)
    success_url: AnyHttpUrl | None = None
    connect_timeout_seconds: Seconds = 5.0
    request_timeout_seconds: Seconds = 30.0
    forward_deadline_seconds: Seconds = 20.0
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    # A connection that sends no complete request head within this is closed.
    connection_idle_seconds: float = Field(default=10.0, gt=0, le=3600)
    idle_exit_seconds: float | None = Field(default=None, gt=0)
    # How result pages name providers: {github = "GitHub"}; the id where none is given.
    provider_names: dict[str, Annotated[str, Field(min_length=1, max_length=100)]] = {}
    # An http:// control plane off this machine would carry the API key in cleartext.
    allow_insecure_control_plane: bool = False
    # Read by the tools (login, the Python API, doctor): where a login's browser comes back.
    callback: Literal["auto", "loopback", "hosted"] = "auto"

    @model_validator(mode="after")
    def _no_cleartext_credentials(self) -> Settings:
        url = self.control_plane_url
        if url.scheme == "http" and not self.allow_insecure_control_plane:
            host = (url.host or "").strip("[]")
            try:
                loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ValueError(
                    f"control_plane_url {url} is plain http on another machine: the API key "
                    "and every code would cross the network in cleartext. Use https, or set "
                    "allow_insecure_control_plane = true if this network is yours"
                )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if value == "localhost":
            return value
        try:
            address = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ValueError(
                "must be 'localhost' or a loopback address such as 127.0.0.1 or ::1"
            ) from None
        if not address.is_loopback:
            raise ValueError(
                f"{value} is not a loopback address: oauth-bridge listens on loopback only"
                " (RFC 8252), so that no other machine can deliver or read a login"
            )
        return str(address)


@dataclass(frozen=True)
class Credentials:
    """The headers' secrets; repr never shows them."""

    api_key: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    workspace_id: str | None = None
    # Where each came from ("environment", "file", "config") or None: never a value.
    sources: dict[str, str | None] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.bearer_token) if s]


@dataclass(frozen=True)
class Config:
    """Settings plus the credentials read from the environment or the files they name."""

    settings: Settings
    credentials: Credentials
    source: Path | None


def load_config(
    *,
    config_file: Path,
    explicit_file: bool,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Merge file < environment < flags, validate, and read the credential files."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}

    source: Path | None = None
    if explicit_file or config_file.exists():
        source = config_file
        for key, value in _read_toml(config_file).items():
            values[key] = value
            origin[key] = f"{config_file}: key '{key}'"
            if key in NOT_STRINGS and isinstance(value, str):
                raise ConfigError(
                    f"bad configuration:\n  {config_file}: key '{key}': must be a TOML "
                    f"{'boolean' if key.startswith('allow_') else 'number'}, not the string "
                    f"{value!r} (write it without quotes)"
                )
    for key, name in ENVIRONMENT.items():
        if env.get(name, "") != "":
            values[key] = env[name]
            origin[key] = f"environment variable {name}"
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = value
            origin[key] = f"option {FLAGS.get(key, '--' + key.replace('_', '-'))}"

    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, config_file)) from None

    api_key, api_key_from = _secret(
        env.get(API_KEY_ENV), settings.api_key_file, "api_key_file", source
    )
    bearer, bearer_from = _secret(
        env.get(BEARER_TOKEN_ENV), settings.bearer_token_file, "bearer_token_file", source
    )
    workspace_from = None
    if settings.workspace_id is not None:
        workspace_from = "environment" if env.get(ENVIRONMENT["workspace_id"]) else "config"
    credentials = Credentials(
        api_key=api_key,
        bearer_token=bearer,
        workspace_id=settings.workspace_id,
        sources={
            "api_key": api_key_from,
            "bearer_token": bearer_from,
            "workspace_id": workspace_from,
        },
    )
    return Config(settings=settings, credentials=credentials, source=source)


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here: most daemons have no config file, and start without its parser

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _secret(
    from_env: str | None, path: Path | None, key: str, source: Path | None
) -> tuple[str | None, str | None]:
    """Return a secret and where it came from: the environment first, then its file."""
    if from_env:
        return from_env, "environment"
    if path is not None and source is not None:
        # A relative path means relative to the config file, not to wherever we started.
        path = source.parent / path.expanduser()
    secret = _read_secret(path, key, source)
    return secret, None if secret is None else "file"


def _read_secret(path: Path | None, key: str, source: Path | None) -> str | None:
    if path is None:
        return None
    where = f"{source}: key '{key}'" if source else key
    path = path.expanduser().absolute()
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if not secret:
        raise ConfigError(f"{where}: {path} is empty")
    return secret


def _describe(exc: ValidationError, origin: Mapping[str, str], config_file: Path) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        # The one check across keys (an error without a location) is the control plane's.
        key = str(error["loc"][0]) if error["loc"] else "control_plane_url"
        where = origin.get(key, f"{config_file}: key '{key}'")
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key (see config.example.toml for the keys)")
        elif error["type"] in ("url_parsing", "url_scheme", "url_type"):
            lines.append(
                f"{where}: must be an absolute http(s) URL such as https://api.host.langchain.com"
            )
        else:
            lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "bad configuration:\n  " + "\n  ".join(lines)
