"""No secret in the open: the backup and restore flows run with known secrets, and nothing shows them.

The secrets: an S3 secret access key (the storage block), the backup key (its
Secret block) and a database password (a login role of its own; the server's
trust authentication ignores it, but it is in every connection string). After
nightly-backup and validate-backup, every log line, artifact, task run name and
stored flow run parameter of both runs is searched, with the command line of
every process the runs started (recorded at Popen, and sampled from /proc) and
the repr() of every object that holds a secret.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from prefect_aws import AwsCredentials
from psycopg import sql
from pydantic import SecretStr

from blocks.backup import BackupStorage
from flows.backup import nightly_backup, validate_backup
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.repospec import s3_client
from medianest_delivery.dsn import libpq_target, redact_dsn
from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.release.signing_keys import generate_key_pair
from medianest_delivery.rollout.migrations import apply_migrations, discover_migrations
from medianest_delivery.settings import StackSettings

pytestmark = pytest.mark.integration
MIGRATIONS = Path(__file__).resolve().parents[2] / "examples" / "medianest" / "migrations"
SERVER = "postgresql://postgres@127.0.0.1:5432"


class CommandLines:
    """Every command line this process starts (recorded at Popen) and every one on the machine (sampled)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.sampled: set[str] = set()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):  # the process ended meanwhile
                    self.sampled.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            self._stop.wait(0.02)

    def __enter__(self) -> CommandLines:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join(timeout=30)


@pytest.fixture
def command_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[CommandLines]:
    lines = CommandLines()
    original = subprocess.Popen

    class RecordedPopen(original):  # type: ignore[misc,valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            lines.started.append(args if isinstance(args, str) else " ".join(str(a) for a in args))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", RecordedPopen)
    with lines:
        yield lines


@pytest.fixture
def secrets(prefect_harness: None) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    key = EncryptionKey.generate()
    key_secret = f"it-leak-key-{tag}"
    Secret(value=key.encoded()).save(key_secret, overwrite=True)
    return {"s3": f"s3-secret-{tag}", "db": f"db-password-{tag}", "backup key": key.encoded(), "key_secret": key_secret}


@pytest.fixture
def database_with_password(secrets: dict[str, str]) -> Iterator[str]:
    """A MediaNest database owned by a role of its own, reached with a connection string holding its password."""
    name = f"leak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(secrets["db"])
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
    dsn = f"postgresql://{name}:{secrets['db']}@127.0.0.1:5432/{name}"
    apply_migrations(dsn, discover_migrations(MIGRATIONS))
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO media (title, kind) SELECT 'film ' || g, 'movie' FROM generate_series(1, 500) g")
    yield dsn
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)", (name,)
        ).fetchall():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(row[0])))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def s3_storage(secrets: dict[str, str]) -> str:
    settings = StackSettings()
    stack_up(settings, {"s3-emulator"})
    bucket = f"it-leak-{uuid.uuid4().hex[:8]}"
    storage = BackupStorage(
        kind="s3",
        bucket=bucket,
        credentials=AwsCredentials(
            aws_access_key_id="emulator",
            aws_secret_access_key=secrets["s3"],
            region_name="eu-west-1",
            aws_client_parameters={"endpoint_url": settings.s3_endpoint},
        ),
    )
    s3_client(storage.spec()).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    name = f"it-leak-{uuid.uuid4().hex[:8]}"
    storage.save(name, overwrite=True)
    return name


def everything_shown_for(flow_run_ids: list[Any]) -> list[str]:
    """Logs, artifacts, task run names and stored parameters of the runs, as the API serves them to the UI."""
    APILogHandler().flush()  # logs are sent in batches: send what is queued before reading them back
    shown: list[str] = []
    with get_client(sync_client=True) as client:
        for run_id in flow_run_ids:
            shown.append(repr(client.read_flow_run(run_id).parameters))
        shown += [log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)))]
        for artifact in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids))
        ):
            shown.append(f"{artifact.key} {artifact.description} {artifact.data}")
        shown += [
            task_run.name
            for task_run in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))
        ]
    return shown


def test_backup_and_restore_with_known_secrets_show_none_of_them(
    secrets: dict[str, str], database_with_password: str, s3_storage: str, command_lines: CommandLines
) -> None:
    """nightly-backup and validate-backup with a password in the connection string, an S3 secret and a backup
    key: no log, artifact, task run name, stored parameter or process command line holds any of them."""
    backup = nightly_backup(
        database_url=SecretStr(database_with_password),
        stanza="it-leak",
        storage_block=s3_storage,
        key_secret=secrets["key_secret"],
        replicate=False,
        include_configuration=False,
        include_secrets=False,
        return_state=True,
    )
    validation = validate_backup(
        database_url=SecretStr(database_with_password),
        restore_server=SecretStr(database_with_password.rsplit("/", 1)[0] + "/postgres"),
        stanza="it-leak",
        storage_block=s3_storage,
        key_secret=secrets["key_secret"],
        return_state=True,
    )
    assert backup.is_completed(), backup
    assert validation.is_completed(), validation
    with get_client(sync_client=True) as client:  # what the UI shows for the DSN parameters
        stored = client.read_flow_run(validation.state_details.flow_run_id).parameters
    assert (stored["database_url"], stored["restore_server"]) == ("**********", "**********")
    shown = everything_shown_for([backup.state_details.flow_run_id, validation.state_details.flow_run_id])
    assert any("it-leak" in text for text in shown), "the search found nothing of the runs at all"
    started_tools = [c for c in command_lines.started if c.split(" ", 1)[0].endswith(("pg_dump", "pg_restore"))]
    assert len(started_tools) >= 2, command_lines.started  # pg_dump for the backup, pg_restore for the proof
    for name in ("s3", "db", "backup key"):
        assert not [t for t in shown if secrets[name] in t], f"the {name} secret is shown by the Prefect API"
        assert not [c for c in command_lines.started if secrets[name] in c], f"the {name} secret is in a command line"
        assert not [c for c in command_lines.sampled if secrets[name] in c], f"the {name} secret was seen in /proc"


def test_repr_of_what_holds_a_secret_shows_none(secrets: dict[str, str], s3_storage: str) -> None:
    """Blocks, the repository spec, the backup key and the signing key pair print without their secrets."""
    storage = BackupStorage.load(s3_storage)
    pair = generate_key_pair(b"pw")
    key = EncryptionKey.parse(secrets["backup key"])
    printed = [repr(storage), repr(storage.spec()), repr(key), str(key), repr(pair)]
    for text in printed:
        assert secrets["s3"] not in text
        assert secrets["backup key"] not in text
        assert "ENCRYPTED SIGSTORE PRIVATE KEY" not in text
    assert key.key_id in repr(key)


def test_tools_get_the_password_by_environment_and_people_see_it_redacted() -> None:
    """The connection string a tool's command line shows has no password; the environment carries it; what a
    message or a name shows is redacted."""
    target, env = libpq_target("postgresql://app:hunter2-secret@127.0.0.1:5432/media")
    assert "hunter2" not in target
    assert env == {"PGPASSWORD": "hunter2-secret"}
    assert "hunter2" not in redact_dsn("postgresql://app:hunter2-secret@127.0.0.1:5432/media")
