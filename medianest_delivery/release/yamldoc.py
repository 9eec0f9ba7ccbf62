"""One reader for the YAML documents of an app's repository that become pydantic models."""

from __future__ import annotations

from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medianest_delivery.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_yaml_model(model: type[ModelT], text: str, origin: str) -> ModelT:
    """YAML text as ``model``; an empty document is the model's defaults. Errors name the file and the field."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin} must be a mapping, not {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{origin} is invalid: {problems}") from exc
