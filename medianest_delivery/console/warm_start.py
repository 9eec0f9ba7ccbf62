"""A process worker whose flow runs start warm: `medianest-delivery worker`.

`prefect worker start` starts each flow run as ``python -m prefect.engine``: a
new interpreter that imports Prefect and the flows (about 3 s on this machine)
after a poll that may wait 10 s. This worker polls every second and keeps one
*spare* interpreter ready, Prefect and every flow module already imported,
waiting on a unix socket. Each flow run's command is the launcher
(`medianest-flow-run`): it hands its environment, working directory and
standard streams to the spare, which then runs exactly what ``python -m
prefect.engine`` runs (the same module, as ``__main__``), while the launcher
relays signals (cancellation) and exits with the run's status. A new spare
starts at once for the next run.

Nothing is forked: a spare is a fresh process, so no lock or thread of a parent
is inherited (Prefect's engine is not fork-safe, PrefectHQ/prefect#16802). The
launcher falls back to ``python -m prefect.engine`` whenever the warm path
cannot serve the run as the cold one would: no spare answers, the spare's code
is older than the files on disk, or the run's Prefect API or credentials differ
from the spare's (every other setting is read from the run's own environment).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

from medianest_delivery.settings import PROJECT_ROOT

SOCKET_ENV = "MEDIANEST_WARM_START_SOCKET"
# How long the launcher waits for a spare to take its run before starting the engine itself (a spare that is
# still importing answers within a few seconds; one that never will must not hold a run up for long).
HANDOFF_TIMEOUT_SECONDS = 15.0
SOURCE_PACKAGES = ("flows", "tasks", "blocks", "medianest_delivery")
PR_SET_PDEATHSIG = 1
logger = logging.getLogger(__name__)


def code_fingerprint(root: Path = PROJECT_ROOT) -> str:
    """What the spare imported: every source file's path, size and modification time."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def api_target(settings: Any) -> tuple[str, str, str]:
    """Where a Prefect client of these settings goes, and as whom (clients made at import keep these)."""
    api = settings.api
    secret = api.auth_string.get_secret_value() if api.auth_string else ""
    key = api.key.get_secret_value() if api.key else ""
    return (str(api.url or ""), secret, key)


def refusal(spare_code: str, run_code: str, spare_api: tuple[str, str, str], run_api: tuple[str, str, str]) -> str:
    """Why a spare cannot run this flow run as a cold start would ('' when it can)."""
    if spare_code != run_code:
        return "the source files changed since the spare imported them"
    if spare_api[0] != run_api[0]:
        return f"the run's Prefect API is {run_api[0]}, the spare's {spare_api[0]}"
    if spare_api[1:] != run_api[1:]:
        return "the run's Prefect API credentials differ from the spare's"
    return ""


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _receive(reader: Any) -> dict[str, Any] | None:
    line = reader.readline()
    return json.loads(line) if line else None


# -- the spare ------------------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """An idle spare goes when the worker goes (a spare running a flow run lives on, as a cold run would)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _preload() -> None:
    """Everything a flow run imports before its first task: Prefect's engine and every flow of ours."""
    import importlib

    import prefect.engine
    import prefect.flow_engine
    import prefect.task_engine  # noqa: F401

    for path in sorted((PROJECT_ROOT / "flows").glob("*.py")):
        if path.stem != "__init__":
            importlib.import_module(f"flows.{path.stem}")


def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The launcher's request: a length-prefixed JSON document with its stdin, stdout and stderr attached."""
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        if len(message) < 8 or len(fds) != 3:
            raise ValueError("a request is a length, a document and three file descriptors")
        size = int.from_bytes(message[:8], "big")
        body = message[8:]
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("the launcher hung up mid-request")
            body += chunk
        return json.loads(body.decode()), fds
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        return None


def serve_one(listener_fd: int, taken_fd: int) -> int:
    """The spare: import, take one run from the listener, tell the worker (so it starts the next spare), run it.

    The handoff has two phases so that a run never starts twice: the spare says whether it can take the run,
    and runs it only once the launcher answers "go" (a launcher that gave up, or was killed, never does, and
    starts the engine itself or not at all).
    """
    _die_with_parent()
    code = code_fingerprint()
    _preload()
    listener = socket.socket(fileno=listener_fd)
    while True:
        conn, _ = listener.accept()
        conn.settimeout(HANDOFF_TIMEOUT_SECONDS)
        received = _read_request(conn)
        if received is None:
            conn.close()
            continue  # a launcher that gave up before we answered: wait for the next one
        break
    listener.close()
    os.write(taken_fd, b"t")
    os.close(taken_fd)
    request, fds = received
    from prefect.context import SettingsContext, get_settings_context
    from prefect.settings import Settings

    current = get_settings_context()
    os.environ.clear()
    os.environ.update(request["env"])
    run_settings = Settings()  # the run's own settings, read from its environment as a cold engine would
    reason = refusal(code, code_fingerprint(), api_target(current.settings), api_target(run_settings))
    reader = conn.makefile("rb")
    try:
        _send(conn, {"accepted": not reason, "reason": reason, "pid": os.getpid()})
        go = None if reason else _receive(reader)
    except (OSError, ValueError):
        go = None
    if not go or not go.get("go"):
        for fd in fds:
            os.close(fd)
        return 0  # refused, or the launcher gave up: it runs (or ran) the engine itself
    conn.settimeout(None)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 0)
    _end_with_the_launcher(reader)
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    with SettingsContext(profile=current.profile, settings=run_settings):
        status = _run_engine(request["argv"])
    with contextlib.suppress(OSError):
        _send(conn, {"exit": status})
    return status


def _end_with_the_launcher(reader: Any) -> None:
    """A launcher killed outright (the worker's last resort) takes the run's processes with it, as a cold engine
    process would go: the spare leads its own process group, so that is the run and every child it started."""

    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while reader.readline():
                pass
        os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _run_engine(argv: list[str]) -> int:
    """Exactly ``python -m prefect.engine <argv>``, in this already warm interpreter."""
    sys.argv = ["prefect.engine", *argv]
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as a cold engine would, then its status
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


# -- the launcher (the flow run's command) --------------------------------------------------------------------
def _cold_start(argv: list[str]) -> NoReturn:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *argv])  # noqa: S606 - an argument list


def launch() -> None:
    """`medianest-flow-run`: hand the run to a warm spare, or start the engine here if none can take it."""
    argv = sys.argv[1:]
    path = os.environ.get(SOCKET_ENV)
    if not path:
        _cold_start(argv)
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(HANDOFF_TIMEOUT_SECONDS)
    try:
        conn.connect(path)
        body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "argv": argv}).encode()
        socket.send_fds(conn, [len(body).to_bytes(8, "big") + body], [0, 1, 2])
        reader = conn.makefile("rb")
        answer = _receive(reader)
        if answer and answer.get("accepted"):
            _send(conn, {"go": True})  # from here on the spare runs it: never start the engine here as well
        else:
            reason = answer.get("reason") if answer else "no answer"
            print(f"warm start refused ({reason}); starting the engine", file=sys.stderr)
            answer = None
    except (OSError, ValueError) as exc:
        print(f"warm start unavailable ({type(exc).__name__}); starting the engine", file=sys.stderr)
        answer = None
    if answer is None:
        conn.close()
        _cold_start(argv)
        return
    conn.settimeout(None)
    runner = int(answer["pid"])

    def relay(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(runner, signum)  # the run and what it started, as Prefect signals a run's process group

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, relay)
    result = _receive(reader)
    # The run's process ends after its last log lines and events are sent: wait for its end, as a parent would.
    while _receive(reader) is not None:
        pass
    if result is None:
        print("the warm flow run process ended without a status", file=sys.stderr)
        sys.exit(1)
    sys.exit(int(result["exit"]))


# -- the worker -----------------------------------------------------------------------------------------------
class WarmStarter:
    """Keeps one spare listening on ``path`` while the worker runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stop = threading.Event()
        self._spare: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)  # the run's environment (credentials) goes through it
        self.listener.listen(16)
        threading.Thread(target=self._keep_a_spare, name="warm-starter", daemon=True).start()

    def _keep_a_spare(self) -> None:
        while not self._stop.is_set():
            taken_r, taken_w = os.pipe()
            spare = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "medianest_delivery.console.warm_start",
                    str(self.listener.fileno()),
                    str(taken_w),
                ],
                pass_fds=(self.listener.fileno(), taken_w),
                stdin=subprocess.DEVNULL,
                cwd=PROJECT_ROOT,
                # Its own process group: a Ctrl-C on the worker does not reach runs, and a run's signals reach
                # exactly the run (the launcher relays them to this group).
                start_new_session=True,
            )
            self._spare = spare
            os.close(taken_w)
            # Next spare when this one took a run, or died before (an import error: wait, then try again).
            taken = os.read(taken_r, 1)
            os.close(taken_r)
            if taken:
                # It runs a flow run now, as our child: reap it when it ends (no zombie left behind).
                threading.Thread(target=spare.wait, name=f"reap-{spare.pid}", daemon=True).start()
            else:
                spare.wait()
                logger.warning("warm-start spare exited with %s before taking a run", spare.returncode)
                self._stop.wait(5)

    def stop(self) -> None:
        self._stop.set()
        spare = self._spare
        if spare is not None and spare.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                spare.terminate()  # idle: it has taken no run (a spare running one is no longer ours to stop)
        self.listener.close()
        self.path.unlink(missing_ok=True)


def run_worker(pool: str, name: str | None, limit: int | None, socket_path: Path) -> int:
    """`prefect worker start` polling every second, with a warm starter: its exit status."""
    # The spares and the worker's runs get exactly the same environment: this process's.
    os.environ[SOCKET_ENV] = str(socket_path)
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    starter = WarmStarter(socket_path)
    starter.start()
    # Prefect's own CLI, in a process whose process worker defaults a run's command to the launcher: the pool and
    # the deployments stay as they are, and a plain `prefect worker start` on them runs Prefect's default command.
    argv = [sys.executable, "-m", "medianest_delivery.console.warm_start", "prefect-worker", "start", "--pool", pool]
    if name:
        argv += ["--name", name]
    if limit:
        argv += ["--limit", str(limit)]
    worker = subprocess.Popen(argv)

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    try:
        return worker.wait()
    finally:
        starter.stop()


def launcher_path() -> str:
    return str(Path(sys.executable).parent / "medianest-flow-run")


def default_command_is_the_launcher() -> None:
    """Runs whose deployment or pool sets no command get the launcher instead of ``python -m prefect.engine``."""
    from prefect.workers.process import ProcessJobConfiguration

    prepare = ProcessJobConfiguration.prepare_for_flow_run

    def prepare_with_launcher(self: Any, *args: Any, **kwargs: Any) -> None:
        prepare(self, *args, **kwargs)
        if not self._command_configured:
            self.command = launcher_path()
            self._command_configured = True

    ProcessJobConfiguration.prepare_for_flow_run = prepare_with_launcher  # type: ignore[method-assign]


def prefect_worker(argv: list[str]) -> int:
    """`prefect worker <argv>` (Prefect's own CLI) with the launcher as the process worker's default command."""
    default_command_is_the_launcher()
    from prefect.cli import app

    sys.argv = ["prefect", "worker", *argv, "--type", "process"]
    try:
        app()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "prefect-worker":
        sys.exit(prefect_worker(sys.argv[2:]))
    sys.exit(serve_one(int(sys.argv[1]), int(sys.argv[2])))
