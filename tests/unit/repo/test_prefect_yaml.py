"""prefect.yaml names real flows with parameters they accept."""

from __future__ import annotations

import importlib
import inspect

import yaml

from tests.helpers import REPO_ROOT


def test_every_deployment_entrypoint_is_a_flow_with_matching_parameters() -> None:
    """Every deployment's entrypoint imports as a flow that accepts its parameters, on the medianest-process pool."""
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    assert config["deployments"], "no deployments declared"
    for deployment in config["deployments"]:
        path, _, attribute = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.get("parameters", {})) <= accepted, deployment["name"]
        assert deployment["work_pool"]["name"] == "medianest-process"
