"""Which runtime and database server an environment gets (blocks under Prefect's test harness)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect_docker import DockerHost
from pydantic import SecretStr, ValidationError

from blocks import runtime as targets
from blocks.runtime import EnvironmentTarget, environment_database_server, environment_runtime
from medianest_delivery.appconfig import DEFAULT_DATABASE_SERVER, load_app_config
from medianest_delivery.rollout.runtime import DockerRuntime
from medianest_delivery.rollout.swarm import SwarmRuntime
from tests.helpers import SAMPLE_APP

ENGINE = DockerHost(base_url="unix:///nonexistent/docker.sock")


@pytest.fixture(autouse=True)
def engine_clients_are_not_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing a runtime is what is tested here: the flow's engine client is a placeholder, never connected."""
    monkeypatch.setattr(DockerHost, "get_client", lambda self: object())


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("mysql://root@127.0.0.1:3306", "is not a postgresql://user@host:port URL"),
        ("postgresql://app:hunter2@127.0.0.1:5433/medianest", "names a database"),
    ],
)
def test_a_bad_database_server_is_named_without_its_password(server: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        EnvironmentTarget(database_server=SecretStr(server))
    assert "hunter2" not in str(caught.value)


def test_a_password_given_as_a_plain_string_is_not_echoed_by_a_refusal() -> None:
    with pytest.raises(ValidationError, match="names a database") as caught:
        EnvironmentTarget(database_server="postgresql://app:hunter2@127.0.0.1:5433/medianest")  # type: ignore[arg-type]
    assert "hunter2" not in str(caught.value)


def test_a_remote_docker_api_without_tls_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"tcp://swarm-manager\.example:2375 is a remote Docker API without TLS"):
        EnvironmentTarget(runtime="swarm", docker_host="tcp://swarm-manager.example:2375")
    with pytest.raises(ValidationError, match=r"node-1\.example:2375 is a remote Docker API without TLS"):
        EnvironmentTarget(runtime="swarm", node_docker_hosts=["tcp://node-1.example:2375"])
    assert EnvironmentTarget(docker_host="tcp://127.0.0.1:2375").docker_host == "tcp://127.0.0.1:2375"


def test_each_environment_gets_its_database_on_its_server_with_options_kept() -> None:
    config = load_app_config(str(SAMPLE_APP / "delivery.yaml"))
    server = EnvironmentTarget(database_server=SecretStr("postgresql://ops@127.0.0.1:5433?sslmode=disable"))
    assert config.database_url("staging", server.database_server_url()) == (
        "postgresql://ops@127.0.0.1:5433/medianest_staging?sslmode=disable"
    )
    assert config.database_url("preview-x") == f"{DEFAULT_DATABASE_SERVER}/medianest_preview_x"


def test_without_blocks_staging_runs_on_the_local_swarm_and_the_rest_on_the_flows_engine(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DockerRuntime, "list", lambda self, environment: [])
    staging = environment_runtime("staging", ENGINE)
    assert isinstance(staging, SwarmRuntime)
    assert staging.manager.endswith("/swarm/manager/docker.sock")
    assert len(staging.node_hosts) == 2
    assert isinstance(environment_runtime("production", ENGINE), DockerRuntime)
    assert environment_database_server("production") == DEFAULT_DATABASE_SERVER


def test_a_staging_still_running_on_the_engine_stays_there(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(DockerRuntime, "list", lambda self, environment: ["a replica"])
    assert isinstance(environment_runtime("staging", ENGINE), DockerRuntime)
    assert "staging still runs on the Docker Engine" in caplog.text


def test_a_saved_target_moves_an_environment(prefect_harness: None, tmp_path: Path) -> None:
    name = f"preview-t{uuid.uuid4().hex[:6]}"
    (tmp_path / "ca.pem").write_text("-----BEGIN PLACEHOLDER-----\n")
    EnvironmentTarget(
        runtime="swarm",
        docker_host="tcp://swarm-manager.example:2376",
        tls_ca_cert=str(tmp_path / "ca.pem"),
        node_docker_hosts=["tcp://node-1.example:2376"],
        database_server=SecretStr("postgresql://ops@127.0.0.1:5433"),
    ).save(name)
    runtime = environment_runtime(name, ENGINE)
    assert isinstance(runtime, SwarmRuntime)
    assert (runtime.manager, runtime.node_hosts) == ("tcp://swarm-manager.example:2376", ["tcp://node-1.example:2376"])
    assert environment_database_server(name) == "postgresql://ops@127.0.0.1:5433"
    EnvironmentTarget(runtime="docker").save("production-like", overwrite=True)
    assert isinstance(targets.environment_runtime("production-like", ENGINE), DockerRuntime)


def test_tls_verifies_the_server(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
    target = EnvironmentTarget(tls_ca_cert=str(ca), tls_client_cert=str(cert), tls_client_key=str(key))
    tls = target.tls()
    assert tls.verify is True
    assert tls.ca_cert == str(ca)
    assert tls.cert == (str(cert), str(key))
    assert EnvironmentTarget().tls() is None
