"""The app config file (delivery.yaml): what to build, test and ship for one app.

The flows serve any app described this way; examples/medianest is one of them.
Loading validates everything up front so that a typo fails before any work.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medianest_delivery.errors import ConfigError
from medianest_delivery.settings import PROJECT_ROOT

# The sample app: every flow's default `app_config`.
DEFAULT_APP_CONFIG = str(PROJECT_ROOT / "examples" / "medianest" / "delivery.yaml")
# The local system PostgreSQL (SCRAM over TCP; our password in ~/.pgpass): every environment's default server.
DEFAULT_DATABASE_SERVER = "postgresql://postgres@127.0.0.1:5432"

COMPONENT_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


# Paths end up in haproxy.cfg (`option httpchk GET <path>`) and in URLs: no spaces, no control characters.
URL_PATH = re.compile(r"^/[A-Za-z0-9._~!$&()*+,;=:@%/?-]*$")  # no quote: HAProxy reads it as one


def require_url_path(value: str) -> str:
    if not URL_PATH.match(value):
        raise ValueError(
            f"{value!r} is not a URL path: it must start with '/' and hold no spaces or control characters"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityCommand(_Strict):
    name: str = Field(description="Short name shown in the Prefect UI.")
    argv: list[str] = Field(min_length=1, description="Argument list; '{python}' is this interpreter.")
    timeout_seconds: float = Field(default=900, gt=0)
    needs: list[str] = Field(
        default_factory=list, description="Commands that must pass first; the others run concurrently."
    )

    def resolved_argv(self) -> list[str]:
        return [sys.executable if arg == "{python}" else arg for arg in self.argv]


class QualityConfig(_Strict):
    commands: list[QualityCommand] = Field(default_factory=list)
    coverage_report: str | None = Field(default=None, description="coverage JSON or Cobertura XML")
    coverage_min: float = Field(default=85.0, ge=0, le=100)

    @model_validator(mode="after")
    def _needs_name_earlier_commands(self) -> QualityConfig:
        seen: set[str] = set()
        for command in self.commands:
            unknown = [n for n in command.needs if n not in seen]
            if unknown:
                raise ValueError(f"quality command {command.name!r} needs {unknown}, which are not listed before it")
            seen.add(command.name)
        return self


class SecurityConfig(_Strict):
    ignore_file: str | None = None
    # What deploys demand of the attestations (medianest_delivery/release/policy.py); None: the defaults.
    release_policy: str | None = None
    sast_paths: list[str] = Field(default_factory=lambda: ["."])
    fail_on: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per scanner (vulnerability, secret, misconfig, license, sast): blocking severities.",
    )
    forbidden_licenses: list[str] = Field(
        default_factory=lambda: ["AGPL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0"]
    )


class Component(_Strict):
    name: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    port: int = Field(gt=0, lt=65536)
    health: str = "/health"
    ready: str = "/ready"
    metrics: str | None = None
    openapi: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Container environment; {database_url}, {environment} and {router_url:<component>} are filled in",
    )
    smoke: list[str] = Field(default_factory=list, description="Critical GET paths that must answer 2xx")
    canary_affinity: Literal["none", "cookie"] = Field(
        default="none",
        description=(
            "none: each request is routed by the canary's share on its own; cookie: the router gives each "
            "client a canary_bucket cookie, so a browser stays on one version from canary step to step"
        ),
    )
    secrets_as_files: bool = Field(
        default=False,
        description=(
            "The app reads <KEY>_FILE: on Docker Swarm, variables holding {database_url} (with its password) "
            "are Swarm secrets mounted at /run/secrets/<KEY>. Otherwise they are plain variables"
        ),
    )

    @field_validator("health", "ready", "metrics", "openapi")
    @classmethod
    def _is_a_url_path(cls, value: str | None) -> str | None:
        return None if value is None else require_url_path(value)

    @field_validator("smoke")
    @classmethod
    def _are_url_paths(cls, value: list[str]) -> list[str]:
        return [require_url_path(v) for v in value]

    @field_validator("name")
    @classmethod
    def _name_is_an_image_path(cls, value: str) -> str:
        if not COMPONENT_NAME.match(value):
            raise ValueError(f"component name {value!r} must be lowercase letters, digits and . _ -")
        return value


class DatabaseConfig(_Strict):
    name: str
    migrations: str = "migrations"
    checks: list[str] = Field(default_factory=list, description="SQL the app needs to succeed after migrating")


class AppConfig(_Strict):
    name: str
    source: str = ""
    version: str = "0.0.0"
    quality: QualityConfig = Field(default_factory=QualityConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    components: list[Component] = Field(min_length=1)
    database: DatabaseConfig | None = None
    root: Path = Field(default=Path("."), exclude=True, description="Directory of the config file.")

    @field_validator("name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        if not COMPONENT_NAME.match(value):
            raise ValueError(f"app name {value!r} must be lowercase letters, digits and . _ -")
        return value

    @model_validator(mode="after")
    def _dependencies_exist(self) -> AppConfig:
        names = [c.name for c in self.components]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate component names: {sorted(duplicates)}")
        for component in self.components:
            unknown = set(component.depends_on) - set(names)
            if unknown:
                raise ValueError(f"component {component.name!r} depends on unknown {sorted(unknown)}")
        return self

    def database_name(self, environment: str) -> str:
        """Each environment has its own database: ``<database name>_<environment>``."""
        database = self.database.name if self.database else self.name
        return f"{database}_{environment.replace('-', '_')}"

    def database_url(self, environment: str, server: str = DEFAULT_DATABASE_SERVER) -> str:
        """The environment's database on ``server`` (``postgresql://user@host:port[?options]``, no database)."""
        parts = urlsplit(server)
        return urlunsplit((parts.scheme, parts.netloc, f"/{self.database_name(environment)}", parts.query, ""))

    def component_index(self, name: str) -> int:
        """Position in the config: it fixes the component's ports in every environment."""
        return self.components.index(self.component(name))

    def component(self, name: str) -> Component:
        for component in self.components:
            if component.name == name:
                return component
        known = ", ".join(c.name for c in self.components)
        raise ConfigError(f"unknown component {name!r} in app {self.name!r}; known: {known}")

    def select(self, names: list[str] | None) -> list[Component]:
        return list(self.components) if not names else [self.component(n) for n in names]

    def path(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    def dockerfile_path(self, component: Component) -> Path:
        return self.path(component.context) / component.dockerfile


def load_app_config(path: str | Path) -> AppConfig:
    """Read and validate a delivery.yaml; errors name the file and the field."""
    config_path = Path(path)
    if not config_path.is_file():
        raise ConfigError(f"app config {config_path} does not exist")
    try:
        raw: Any = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"app config {config_path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"app config {config_path} must be a mapping at the top level")
    try:
        config = AppConfig.model_validate({**raw, "root": config_path.resolve().parent})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"app config {config_path} is invalid: {problems}") from exc
    for component in config.components:
        dockerfile = config.dockerfile_path(component)
        if not dockerfile.is_file():
            raise ConfigError(f"component {component.name!r}: Dockerfile {dockerfile} does not exist")
    return config
