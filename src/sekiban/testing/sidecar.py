"""Start placement, the scheduler, daprd and an actor host on this machine, for tests
and development.

The binaries come from `scripts/build-dapr.sh` (cached under
`~/.cache/sekiban/dapr/<version>/`), or from the directory in `SEKIBAN_DAPR_BIN_DIR`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sekiban.errors import SidecarError

CACHE = Path(os.environ.get("SEKIBAN_CACHE", Path.home() / ".cache" / "sekiban"))


def find_binaries() -> Path:
    """The directory holding `daprd` and `placement`."""
    configured = os.environ.get("SEKIBAN_DAPR_BIN_DIR")
    candidates = [Path(configured)] if configured else sorted((CACHE / "dapr").glob("v*"))
    for directory in reversed(candidates):
        if (directory / "daprd").is_file() and (directory / "placement").is_file():
            return directory
    raise SidecarError(
        "daprd and placement were not found; build them with scripts/build-dapr.sh "
        "or set SEKIBAN_DAPR_BIN_DIR"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by this user only.

    The mode is set on the open file before anything is written, also when the file
    already existed with a wider mode (`Path.touch(mode=...)` leaves those as they are).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, 0o600)
        file.write(text)


START_ATTEMPTS = 3


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    *,
    alongside: Sequence[tuple[subprocess.Popen[bytes], Path]] = (),
) -> None:
    """Poll `url` until it answers 2xx; fail early if the process, or one started
    `alongside` it, exits. The error quotes the end of that process's log: a test
    run's temporary directory may be gone by the time someone reads the failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for watched, watched_log in ((process, log), *alongside):
            if watched.poll() is not None:
                raise SidecarError(
                    f"{watched.args!r} exited with {watched.returncode}; see {watched_log}"
                    f"{log_tail(watched_log)}"
                )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SidecarError(f"{url} did not become ready within {timeout}s; see {log}{log_tail(log)}")


def log_tail(log: Path, lines: int = 20) -> str:
    """The last `lines` lines of `log`, indented after a newline ("" when unreadable)."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n    {line}" for line in tail)


@dataclass
class ManagedProcess:
    """A child process in its own session, with its output in a log file."""

    name: str
    args: Sequence[str]
    log: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                list(self.args),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the process dies without any chance to clean up."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()


# Keeps daprd on loopback: the default mDNS resolver multicasts on the LAN. This one
# does no network I/O; actors do not need service invocation between app ids.
LOOPBACK_CONFIGURATION = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: loopback
spec:
  nameResolution:
    component: kubernetes
    configuration:
      template: "127.0.0.1:{{.Port}}"
"""


def postgres_actor_state_component(name: str, connection_string: str, table: str) -> str:
    """A `state.postgresql` (v1) component usable as the actor state store."""
    return f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.postgresql
  version: v1
  metadata:
  - name: connectionString
    value: "{connection_string}"
  - name: tableName
    value: "{table}"
  - name: metadataTableName
    value: "{table}_metadata"
  - name: actorStateStore
    value: "true"
"""


def in_memory_actor_state_component(name: str) -> str:
    """A `state.in-memory` component: actor state lives and dies with daprd."""
    return f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.in-memory
  version: v1
  metadata:
  - name: actorStateStore
    value: "true"
"""


@dataclass
class Node:
    """One app instance: the actor host process and its daprd."""

    app_id: str
    app_port: int
    http_port: int
    grpc_port: int
    app: ManagedProcess
    daprd: ManagedProcess

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def kill(self) -> None:
        self.app.kill()
        self.daprd.kill()

    def stop(self) -> None:
        self.daprd.stop()
        self.app.stop()

    def restart_app(self, timeout: float = 60) -> None:
        """SIGKILL the actor host and start it again on the same port."""
        self.app.kill()
        self.app.start()
        assert self.app.process is not None
        wait_until_ready(
            f"http://127.0.0.1:{self.app_port}/healthz", self.app.process, self.app.log, timeout
        )

    def restart_daprd(self, timeout: float = 60) -> None:
        """SIGKILL daprd and start it again on the same ports."""
        self.daprd.kill()
        self.daprd.start()
        assert self.daprd.process is not None
        wait_until_ready(
            f"{self.http_endpoint}/v1.0/healthz", self.daprd.process, self.daprd.log, timeout
        )


class DaprCluster:
    """placement (and, with `scheduler=True`, the scheduler) plus any number of (actor
    host, daprd) nodes on loopback.

    Actor reminders need the scheduler: without it daprd answers every reminder
    registration with HTTP 500. It runs standalone with etcd embedded, its data in
    `work_dir/scheduler`, so reminders outlive every app and daprd restart (not a
    restart of the cluster with a new `work_dir`).

    `app_target` is the ASGI app for uvicorn, e.g. "examples.dapr_host:app";
    `component` is the actor state store YAML every daprd loads, or `resources_path` a
    directory of component files (what a `dapr.yaml` run file names in
    `resourcesPath`). daprd runs in `work_dir`: relative paths in component files (a
    local file secret store's `secretsFile`) resolve against it, as they resolve
    against the directory `dapr run -f .` runs in.
    """

    def __init__(
        self,
        work_dir: Path,
        app_target: str,
        component: str | None = None,
        *,
        resources_path: Path | None = None,
        app_env: Mapping[str, str] | None = None,
        binaries: Path | None = None,
        ready_timeout: float = 60,
        scheduler: bool = False,
    ) -> None:
        self.work_dir = work_dir
        self.with_scheduler = scheduler
        self.app_target = app_target
        self.app_env = dict(app_env or {})
        self.binaries = binaries or find_binaries()
        self.ready_timeout = ready_timeout
        if (component is None) == (resources_path is None):
            raise ValueError("give either a component or a resources_path")
        if resources_path is not None:
            self.components = resources_path
        else:
            assert component is not None
            self.components = work_dir / "components"
            self.components.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The component holds the database password: readable by this user only.
            write_private(self.components / "actorstate.yaml", component)
        self.config = work_dir / "config.yaml"
        self.config.write_text(LOOPBACK_CONFIGURATION)
        self.placement_port = free_port()
        self.placement: ManagedProcess | None = None
        # Fixed for the cluster's life: etcd keeps its peer URL in its data dir, so a
        # restarted scheduler must come back on the same ports.
        self.scheduler_port, self.etcd_client_port, self.etcd_peer_port = (
            free_port() for _ in range(3)
        )
        self.scheduler: ManagedProcess | None = None
        self.nodes: list[Node] = []

    def start_placement(self) -> None:
        health = free_port()
        self.placement = ManagedProcess(
            "placement",
            [
                str(self.binaries / "placement"),
                "--listen-address",
                "127.0.0.1",
                "--port",
                str(self.placement_port),
                # A one-node Raft cluster; its peer port defaults to a fixed 8201,
                # which would make two clusters on one machine fail each other.
                "--id",
                "placement-0",
                "--initial-cluster",
                f"placement-0=127.0.0.1:{free_port()}",
                "--healthz-port",
                str(health),
                "--enable-metrics=false",
                "--log-level",
                "warn",
            ],
            self.work_dir / "placement.log",
        ).start()
        assert self.placement.process is not None
        wait_until_ready(
            f"http://127.0.0.1:{health}/healthz",
            self.placement.process,
            self.placement.log,
            self.ready_timeout,
        )

    def start_scheduler(self) -> None:
        """Start the scheduler (actor reminders, jobs) on free loopback ports; again
        after `scheduler.kill()` it comes back on the same ports and data."""
        binary = self.binaries / "scheduler"
        if not binary.is_file():
            raise SidecarError(
                f"{binary} was not found; build it with scripts/build-dapr.sh "
                "(it builds only the binaries that are missing)"
            )
        health = free_port()
        self.scheduler = ManagedProcess(
            "scheduler",
            [
                str(binary),
                "--listen-address",
                "127.0.0.1",
                "--port",
                str(self.scheduler_port),
                # Like placement's, its healthz server listens on every interface
                # whatever --healthz-listen-address says; only the port is ours.
                "--healthz-port",
                str(health),
                "--healthz-listen-address",
                "127.0.0.1",
                # Embedded etcd, one member: its client and peer ports default to
                # fixed 2379/2380, which two clusters on one machine would share.
                "--id",
                "scheduler-0",
                "--etcd-initial-cluster",
                f"scheduler-0=http://127.0.0.1:{self.etcd_peer_port}",
                "--etcd-client-port",
                str(self.etcd_client_port),
                "--etcd-client-listen-address",
                "127.0.0.1",
                "--etcd-data-dir",
                str(self.work_dir / "scheduler"),
                "--enable-metrics=false",
                "--log-level",
                "warn",
            ],
            self.work_dir / "scheduler.log",
        ).start()
        assert self.scheduler.process is not None
        wait_until_ready(
            f"http://127.0.0.1:{health}/healthz",
            self.scheduler.process,
            self.scheduler.log,
            self.ready_timeout,
        )

    def _scheduler_args(self) -> list[str]:
        # Only with a scheduler running: daprd pointed at an unreachable scheduler
        # never becomes ready.
        if self.scheduler is None:
            return []
        return ["--scheduler-host-address", f"127.0.0.1:{self.scheduler_port}"]

    def start_node(self, app_id: str) -> Node:
        """Start an actor host and its sidecar; returns when both are ready.

        The ports are free when chosen, but another program (another test run on the
        machine) may bind one before the process does, which then exits: such a start
        is tried again on new ports, up to `START_ATTEMPTS` times."""
        for attempt in range(1, START_ATTEMPTS + 1):
            node = self._start_node(app_id)
            try:
                self._wait_until_ready(node)
                break
            except SidecarError:
                exited = any(
                    managed.process is None or managed.process.poll() is not None
                    for managed in (node.app, node.daprd)
                )
                node.kill()
                if not exited or attempt == START_ATTEMPTS:
                    raise
        self.nodes.append(node)
        return node

    def _start_node(self, app_id: str) -> Node:
        app_port, http_port, grpc_port, internal_port = (free_port() for _ in range(4))
        logs = self.work_dir / app_id
        app = ManagedProcess(
            f"{app_id}-app",
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.app_target,
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
                "--log-level",
                "warning",
            ],
            logs / "app.log",
            env={
                **self.app_env,
                "DAPR_HTTP_PORT": str(http_port),
                "DAPR_GRPC_PORT": str(grpc_port),
            },
        ).start()
        daprd = ManagedProcess(
            f"{app_id}-daprd",
            [
                str(self.binaries / "daprd"),
                "--app-id",
                app_id,
                "--app-port",
                str(app_port),
                "--app-protocol",
                "http",
                "--dapr-http-port",
                str(http_port),
                "--dapr-grpc-port",
                str(grpc_port),
                "--dapr-internal-grpc-port",
                str(internal_port),
                "--placement-host-address",
                f"127.0.0.1:{self.placement_port}",
                *self._scheduler_args(),
                "--resources-path",
                str(self.components),
                "--config",
                str(self.config),
                "--enable-metrics=false",
                # info, not warn: the log then says which name resolver daprd loaded.
                "--log-level",
                "info",
            ],
            logs / "daprd.log",
            cwd=self.work_dir,
            env={
                "DAPR_HOST_IP": "127.0.0.1",
                **{
                    k: v
                    for k, v in self.app_env.items()
                    if k in ("DAPR_API_TOKEN", "APP_API_TOKEN")
                },
            },
        ).start()
        return Node(app_id, app_port, http_port, grpc_port, app, daprd)

    def _wait_until_ready(self, node: Node) -> None:
        app, daprd = node.app, node.daprd
        assert app.process is not None and daprd.process is not None
        wait_until_ready(
            f"http://127.0.0.1:{node.app_port}/healthz",
            app.process,
            app.log,
            self.ready_timeout,
            alongside=[(daprd.process, daprd.log)],
        )
        wait_until_ready(
            f"{node.http_endpoint}/v1.0/healthz", daprd.process, daprd.log, self.ready_timeout
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.placement is not None:
            self.placement.stop()

    def __enter__(self) -> DaprCluster:
        self.start_placement()
        if self.with_scheduler:
            try:
                self.start_scheduler()
            except SidecarError:
                self.stop()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
