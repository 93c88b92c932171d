"""The ``docker`` CLI of this machine's engine, and the hash that names a build context.

The controller builds images with it; the development lab (which may import the
controller, never the reverse) runs its hosts with it. Both shell out to ``docker``
instead of speaking the Engine API: the CLI is what users install, and its errors are
what they know how to read. Callers turn these errors into their own, with their advice.

Example::

    image_id = run_docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.decode()
    tag = f"{repo}:{context_hash({'Dockerfile': Path('app/Dockerfile')})}"
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

# A docker call must never hang forever (a wedged engine, a slow build).
DEFAULT_TIMEOUT = 900.0
# How long a streaming docker whose reader failed is given to exit by itself.
GRACE = 1.0


class DockerCliError(Exception):
    """A ``docker`` command could not be run or did not succeed."""


class DockerNotInstalledError(DockerCliError):
    """There is no ``docker`` client on PATH."""


class DockerTimeoutError(DockerCliError):
    """A ``docker`` command ran longer than its timeout (it was killed)."""


class DockerFailedError(DockerCliError):
    """A ``docker`` command exited non-zero; ``stderr`` is docker's own message."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        self.args_run = args
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"`docker {' '.join(args[:3])} ...` failed: {stderr}")

    @property
    def engine_down(self) -> bool:
        """The client could not reach the engine (dockerd not running)."""
        return "Cannot connect to the Docker daemon" in self.stderr

    def tail(self, lines: int = 6) -> str:
        """The last ``lines`` lines of docker's message, on one line."""
        return " / ".join(self.stderr.splitlines()[-lines:])


def run_docker(
    *args: str,
    input_bytes: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``docker ARGS...`` (output captured) and return the finished process.

    Args:
        args: the docker arguments, e.g. ``("image", "inspect", ref)``.
        input_bytes: fed to docker's standard input.
        timeout: seconds before docker is killed.
        check: raise :class:`DockerFailedError` on a non-zero exit.

    Raises:
        DockerNotInstalledError, DockerTimeoutError, DockerFailedError.
    """
    exe = shutil.which("docker")
    if exe is None:
        raise DockerNotInstalledError("no `docker` client on PATH")
    try:
        proc = subprocess.run(
            [exe, *args], input=input_bytes, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerTimeoutError(
            f"`docker {' '.join(args[:3])}` timed out after {timeout}s"
        ) from exc
    if check and proc.returncode != 0:
        raise DockerFailedError(args, proc.returncode, proc.stderr.decode(errors="replace").strip())
    return proc


@contextmanager
def docker_stdout(*args: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[IO[bytes]]:
    """Run ``docker ARGS...`` and give its standard output to read while it runs.

    For output too large to hold in memory (``docker cp CONTAINER:PATH -`` streams a tar).
    What the reader leaves unread is drained, so docker is not cut off by a closed pipe;
    docker's exit is checked once the block ends. If the block raises and docker has
    failed, docker's error is raised (the reader's is its cause); otherwise docker is killed
    and the reader's error stands.

    Example::

        with docker_stdout("cp", f"{cid}:/app/.", "-") as stream:
            archive = tarfile.open(fileobj=stream, mode="r|")

    Raises:
        DockerNotInstalledError, DockerTimeoutError, DockerFailedError.
    """
    exe = shutil.which("docker")
    if exe is None:
        raise DockerNotInstalledError("no `docker` client on PATH")
    # stderr goes to a file: a pipe nobody reads while stdout is read could fill and block.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [exe, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )
        stdout = proc.stdout
        assert stdout is not None  # stdout=PIPE
        # The deadline covers the reading too: a killed docker ends the stream.
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        deadline = threading.Timer(timeout, expire)
        deadline.start()
        try:
            yield stdout
            while stdout.read(1 << 16):
                pass
        except Exception as exc:
            # A reader failing on a cut stream is most often docker failing: then docker's
            # message is the error (docker exits at once after it; one still writing is
            # killed, and the reader's error stands).
            status = _exited(proc, GRACE)
            proc.kill()
            if status not in (None, 0) and not timed_out.is_set():
                raise DockerFailedError(args, status, _read_all(errors)) from exc
            raise
        except BaseException:
            proc.kill()
            raise
        finally:
            stdout.close()
            proc.wait()
            deadline.cancel()
        if timed_out.is_set():
            raise DockerTimeoutError(f"`docker {' '.join(args[:3])}` timed out after {timeout}s")
        if proc.returncode != 0:
            raise DockerFailedError(args, proc.returncode, _read_all(errors))


def _exited(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """The exit status of ``proc`` if it ends within ``grace`` seconds, else None."""
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return None


def _read_all(errors: IO[bytes]) -> str:
    errors.seek(0)
    return errors.read().decode(errors="replace").strip()


def context_hash(files: Mapping[str, Path]) -> str:
    """12 hex digits naming a build context given as ``{path in context: file}``.

    It covers every name and every byte, so any change to the context (a file added,
    renamed or edited) gives another hash, and an unchanged context the same one.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(files[name].read_bytes() + b"\0")
    return digest.hexdigest()[:12]
