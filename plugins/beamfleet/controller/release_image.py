"""What a release image is, found by inspecting it: the layout beamfleet adapts it with.

An application image is any standard release image, untouched: an Elixir ``mix release``
(with or without ERTS), a rebar3 release run in the foreground, or a plain ``erl``
command. beamfleet derives a thin image from it (the naming shim, an entrypoint, the
start script adapted so that the cookie never reaches a command line); this module
decides how, from what inspection found, and refuses, naming what it looked for, when
it cannot.

The inspection is pure (unit-tested on fixture listings and scripts): :func:`inspect`
takes the image's configuration (:class:`ImageConfig`, from ``docker image inspect``),
the output of :data:`PROBE` run in the image, and a function that reads a file of the
image. Gathering those from Docker is the caller's job
(:mod:`beamfleet.controller.deploys.images`).

Example::

    layout = inspect(config, probe_output, read_file)
    layout.kind          # "elixir"
    layout.epmd          # "/app/erts-15.2.7/bin/epmd"
    layout.dockerfile(image_id)
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from pyinfra.api.exceptions import PyinfraError

SHIM: Final = "beamfleet-nodename"
ENTRYPOINT: Final = "beamfleet-entrypoint"
BIN_DIR: Final = "/usr/local/bin"
EPMD_ENV: Final = "BEAMFLEET_EPMD"  # set in a derived image: the EPMD its healthcheck runs

Kind = Literal["self-naming", "elixir", "rebar3", "erl"]

# Run in the image (`sh -c`, as the image's user): what is installed where. One line per
# fact, "<tag> <value>"; a release root is any directory with releases/start_erl.data.
PROBE: Final = r"""
echo "uid $(id -u)"
echo "home ${HOME:-}"
for cmd in erl epmd beamfleet-nodename; do
  found=$(command -v "$cmd" 2>/dev/null) && echo "path $cmd $found"
done
find / -xdev -maxdepth 6 -type f -path '*/releases/start_erl.data' 2>/dev/null |
while read -r data; do
  root=${data%/releases/start_erl.data}
  echo "release $root"
  for f in "$root"/bin/* "$root"/erts-*/bin/epmd "$root"/releases/COOKIE \
           "$root"/releases/*/vm.args "$root"/releases/*/vm.args.src; do
    [ -e "$f" ] && echo "file $f"
  done
done
# TLS distribution's module (the ssl application), wherever the release or the OTP it runs
# on keeps it
tls=$(find / -xdev -maxdepth 7 -type f -name inet_tls_dist.beam 2>/dev/null | head -n 1)
[ -n "$tls" ] && echo "tls $tls"
true
"""

# The Elixir start script's cookie lines (as Elixir 1.18 writes them; any other shape is
# refused at planning time) and what they become: the
# cookie is passed only when RELEASE_COOKIE is set (the entrypoint unsets it), never read
# from the build-time releases/COOKIE; erl then reads $HOME/.erlang.cookie by itself.
ELIXIR_COOKIE_DEFAULT: Final = (
    'RELEASE_COOKIE="${RELEASE_COOKIE:-"$(cat "$RELEASE_ROOT/releases/COOKIE")"}"'
)
ELIXIR_COOKIE_FLAG: Final = '--cookie "$RELEASE_COOKIE"'
# rebar3 (relx) start scripts give erl vm.args as a file (`-args_file`), never on argv.
# vm.args holds the build-time cookie (`-setcookie`: dropped, so erl reads
# $HOME/.erlang.cookie) and a fixed node name (`-name`/`-sname`, which the script insists
# on: replaced by an args file the entrypoint writes the node's name into at start).
RELX_MARKERS: Final = ("RELX_", "relx")
RELX_VMARGS: Final = '-args_file "$VMARGS_PATH"'
NAME_ARGS_FILE: Final = "/tmp/beamfleet-name.args"


# What a refusal to adapt an image's start script recommends instead.
IMAGE_ADVICE: Final = "Use an image that names itself (docs/cluster.md)"


class ReleaseImageError(PyinfraError):
    """beamfleet cannot adapt an application image; the message says what it looked for."""


# What an image's configuration may put into a line of the derived Dockerfile: a user
# (name or uid, optionally `:group`) and a path. A newline in either would be a Dockerfile
# instruction of the image author's choosing, run while beamfleet builds.
IMAGE_USER: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
IMAGE_PATH: Final = re.compile(r"[A-Za-z0-9_./+-]+")


@dataclass(frozen=True)
class ImageConfig:
    """The parts of ``docker image inspect``'s ``.Config`` that decide how an image starts."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_inspect(cls, config: Mapping[str, object]) -> ImageConfig:
        """From the ``Config`` object of ``docker image inspect`` (its ``null``s included)."""

        def words(key: str) -> tuple[str, ...]:
            value = config.get(key) or []
            return tuple(str(w) for w in value) if isinstance(value, list) else ()

        env_list = config.get("Env") or []
        env = dict(
            str(e).split("=", 1)
            for e in (env_list if isinstance(env_list, list) else [])
            if "=" in str(e)
        )
        return cls(
            entrypoint=words("Entrypoint"),
            cmd=words("Cmd"),
            user=str(config.get("User") or ""),
            workdir=str(config.get("WorkingDir") or ""),
            env=env,
        )

    @property
    def argv(self) -> tuple[str, ...]:
        return self.entrypoint + self.cmd


@dataclass(frozen=True)
class Probe:
    """What :data:`PROBE` printed, parsed."""

    uid: int | None = None
    home: str = ""
    paths: Mapping[str, str] = field(default_factory=dict)
    releases: tuple[str, ...] = ()
    files: frozenset[str] = frozenset()
    tls_dist: bool = False  # the image has inet_tls_dist (the ssl application)

    @classmethod
    def parse(cls, text: str) -> Probe:
        uid: int | None = None
        home = ""
        paths: dict[str, str] = {}
        releases: list[str] = []
        files: set[str] = set()
        tls_dist = False
        for line in text.splitlines():
            tag, _, value = line.partition(" ")
            if tag == "uid" and value.strip().isdigit():
                uid = int(value)
            elif tag == "home":
                home = value.strip()
            elif tag == "path" and " " in value:
                name, where = value.split(" ", 1)
                paths[name] = where.strip()
            elif tag == "release":
                releases.append(value.strip())
            elif tag == "file":
                files.add(value.strip())
            elif tag == "tls":
                tls_dist = True
        return cls(uid, home, paths, tuple(releases), frozenset(files), tls_dist)


@dataclass(frozen=True)
class ReleaseLayout:
    """How an image starts, and what the derived layer changes (see :func:`inspect`).

    ``argv``: the command the entrypoint runs (the image's own); ``script``: the release's
    start script (None for plain ``erl``); ``epmd``: the EPMD binary the healthcheck runs;
    ``edits``: shell commands run as root in the derived layer (the cookie adaptation).
    """

    kind: Kind
    argv: tuple[str, ...]
    epmd: str = "epmd"
    script: str | None = None
    edits: tuple[str, ...] = ()
    user: str = ""
    uid: int | None = None
    tls_dist: bool = False  # TLS distribution can start (inet_tls_dist is in the image)

    @property
    def derived(self) -> bool:
        """False for an image that names itself: it is used as it is."""
        return self.kind != "self-naming"

    def dockerfile(self, base: str) -> str:
        """The derived image's Dockerfile, ``FROM base`` (the input image's ID).

        One small layer: the shim and the entrypoint (with the context's file modes), plus
        the start script's edits; the image's user, workdir and environment are kept.
        """
        if not self.derived:
            raise ReleaseImageError("an image that names itself is used as it is, not derived")
        if self.user and not IMAGE_USER.fullmatch(self.user):
            raise ReleaseImageError(
                f"the image's User is {self.user!r}: beamfleet writes it into the derived "
                "image's Dockerfile and takes a user or uid, optionally `:group` (letters, "
                "digits, `_`, `.`, `-`); set the image's USER to such a value"
            )
        if not IMAGE_PATH.fullmatch(self.epmd):
            raise ReleaseImageError(
                f"the image's port mapper is at {self.epmd!r}: beamfleet writes that path into "
                "the derived image's Dockerfile and takes letters, digits and `_./+-` only"
            )
        lines = [f"FROM {base}"]
        root_for_edits = bool(self.edits) and self.user not in ("", "root", "0")
        if root_for_edits:
            lines.append("USER root")
        lines.append(f"COPY {SHIM} {ENTRYPOINT} {BIN_DIR}/")
        if self.edits:
            lines.append("RUN " + " \\\n && ".join(self.edits))
        if root_for_edits:
            lines.append(f"USER {self.user}")
        lines.append(f"ENV {EPMD_ENV}={self.epmd}")
        if self.kind == "rebar3":
            lines.append(f"ENV BEAMFLEET_NAME_ARGS={NAME_ARGS_FILE}")
        lines.append(f"ENTRYPOINT {json.dumps([f'{BIN_DIR}/{ENTRYPOINT}', self.kind])}")
        lines.append(f"CMD {json.dumps(list(self.argv))}")
        return "\n".join(lines) + "\n"

    def healthcheck(self, basename: str) -> str:
        """Healthy once the node's distribution is up: its name is registered in EPMD."""
        return f"{shlex.quote(self.epmd)} -names | grep -q '^name {basename} at'"


def _resolve(argv0: str, workdir: str) -> str:
    if "/" not in argv0:
        return argv0
    return posixpath.normpath(posixpath.join(workdir or "/", argv0))


def _names_itself(argv: Sequence[str], read_file: Callable[[str], str], workdir: str) -> bool:
    if any(SHIM in word for word in argv):
        return True
    first = _resolve(argv[0], workdir)
    if first.startswith("/"):
        try:
            return SHIM in read_file(first)
        except (OSError, UnicodeDecodeError, ReleaseImageError):
            return False
    return False


def _release_of(script: str, probe: Probe) -> str | None:
    """The release root whose ``bin/`` holds ``script``."""
    for root in probe.releases:
        if posixpath.dirname(script) == f"{root}/bin" and script in probe.files:
            return root
    return None


def _erts_epmd(root: str, probe: Probe) -> str | None:
    found = sorted(
        f for f in probe.files if f.startswith(f"{root}/erts-") and f.endswith("/bin/epmd")
    )
    return found[-1] if found else None


def _path_epmd(probe: Probe, what: str) -> str:
    epmd = probe.paths.get("epmd")
    if not epmd:
        raise ReleaseImageError(
            f"{what}, but there is no `epmd` on the image's PATH (looked for "
            "erts-*/bin/epmd in the release, then `command -v epmd`): bundle ERTS in the "
            "release or install the Erlang runtime (e.g. erlang-base)"
        )
    return epmd


def release_kind(text: str) -> Literal["elixir", "rebar3"] | None:
    """Which start script ``text`` is: an Elixir release's, a rebar3 (relx) one's, or None.

    Example::

        release_kind(Path("_build/prod/rel/app/bin/app").read_text())  # "elixir"
    """
    if "RELEASE_COOKIE" in text and "elixir" in text:
        return "elixir"
    if any(marker in text for marker in RELX_MARKERS):
        return "rebar3"
    return None


def is_vm_args(relative: str) -> bool:
    """Whether ``relative`` (a path below a release root) is a release's vm.args file.

    Example::

        is_vm_args("releases/0.1.0/vm.args")  # True
    """
    return relative.startswith("releases/") and relative.endswith(("/vm.args", "/vm.args.src"))


def elixir_edits(script: str, text: str, root: str, advice: str = IMAGE_ADVICE) -> tuple[str, ...]:
    """Shell commands that keep the cookie of the Elixir release at ``root`` off argv.

    ``script`` is the start script's path (``<root>/bin/<name>``), ``text`` its content
    (checked for the known shape), ``advice`` what the refusal recommends instead.

    Example::

        elixir_edits("/app/bin/app", script_text, "/app")  # ("sed -i ...", ...)
    """
    if ELIXIR_COOKIE_DEFAULT not in text or ELIXIR_COOKIE_FLAG not in text:
        raise ReleaseImageError(
            f"the Elixir start script {script} has an unknown shape: beamfleet looked for "
            f"`{ELIXIR_COOKIE_DEFAULT}` and `{ELIXIR_COOKIE_FLAG}` to keep the cookie off "
            f"the command line. {advice}"
        )
    # sed: '|' as the delimiter (the lines hold '/'); '$' and '"' escaped for sed's regex.
    default = ELIXIR_COOKIE_DEFAULT.replace("$", r"\$")
    flag = ELIXIR_COOKIE_FLAG.replace("$", r"\$")
    sed = (
        f's|{default}|RELEASE_COOKIE="${{RELEASE_COOKIE:-}}"|; '
        f's|{flag}|${{RELEASE_COOKIE:+--cookie "\\$RELEASE_COOKIE"}}|g'
    )
    quoted = shlex.quote(script)
    return (
        f"sed -i {shlex.quote(sed)} {quoted}",
        # The build fails, rather than ship a script that still reads the build-time cookie.
        f"! grep -q releases/COOKIE {quoted}",
        f"grep -q 'RELEASE_COOKIE:+--cookie' {quoted}",
        f"rm -f {shlex.quote(root + '/releases/COOKIE')}",
    )


def relx_edits(
    script: str, text: str, root: str, vm_args: Sequence[str], advice: str = IMAGE_ADVICE
) -> tuple[str, ...]:
    """Shell commands that take the cookie and the fixed node name out of a relx release.

    ``vm_args`` are the paths of the release's ``releases/<vsn>/vm.args[.src]`` files;
    ``script``, ``text`` and ``advice`` as for :func:`elixir_edits`.

    Example::

        relx_edits("/opt/app/bin/app", text, "/opt/app", ["/opt/app/releases/1.0/vm.args"])
    """
    args = sorted(vm_args)
    if RELX_VMARGS not in text or not args:
        raise ReleaseImageError(
            f"the rebar3 start script {script} has an unknown shape: beamfleet looked for "
            f"`{RELX_VMARGS}` and a releases/<vsn>/vm.args under {root} (the cookie and the "
            f"node name come from there). {advice}"
        )
    sed = f"/^-setcookie/d; s|^-s\\{{0,1\\}}name .*|-args_file {NAME_ARGS_FILE}|"
    edits: list[str] = []
    for path in args:
        quoted = shlex.quote(path)
        edits.append(f"sed -i {shlex.quote(sed)} {quoted}")
        edits.append(f"! grep -q '^-setcookie' {quoted}")
        edits.append(f"grep -q '^-args_file {NAME_ARGS_FILE}' {quoted}")
    return (*edits, f"rm -f {shlex.quote(root + '/releases/COOKIE')}")


def inspect(
    config: ImageConfig, probe_output: str, read_file: Callable[[str], str]
) -> ReleaseLayout:
    """How to adapt the image: its kind, command, EPMD and the start script's edits.

    ``read_file(path)`` returns a file of the image as text (the start script). Raises
    :class:`ReleaseImageError` naming what was looked for when the image cannot be adapted.
    """
    layout = _inspect(config, probe_output, read_file)
    return dataclasses.replace(layout, tls_dist=Probe.parse(probe_output).tls_dist)


def _inspect(
    config: ImageConfig, probe_output: str, read_file: Callable[[str], str]
) -> ReleaseLayout:
    argv = config.argv
    if not argv:
        raise ReleaseImageError(
            "the image has no ENTRYPOINT or CMD: give it the release's start command "
            '(e.g. CMD ["/app/bin/myapp", "start"])'
        )
    probe = Probe.parse(probe_output)
    if _names_itself(argv, read_file, config.workdir):
        # A derived image names itself too: its EPMD is where the derivation found it, so
        # deploying it again (pinned by its reference) keeps the same healthcheck.
        epmd = config.env.get(EPMD_ENV) or "epmd"
        return ReleaseLayout("self-naming", argv, epmd, user=config.user, uid=probe.uid)
    first = _resolve(argv[0], config.workdir)
    # erl first: an OTP installation (/usr/lib/erlang) looks like a release too.
    if posixpath.basename(first) == "erl":
        return _erl_layout(argv, probe, config)
    root = _release_of(first, probe)
    if root is not None:
        return _release_layout(argv, first, root, probe=probe, read_file=read_file, config=config)
    found = ", ".join(probe.releases) or "none"
    raise ReleaseImageError(
        f"the image's command {shlex.join(argv)} is neither a release's start script "
        f"(bin/<name> next to releases/start_erl.data; releases found: {found}) nor `erl`: "
        "make the release's start script the image's command, or use an image that names "
        "itself (docs/cluster.md)"
    )


def _release_layout(
    argv: tuple[str, ...],
    script: str,
    root: str,
    *,
    probe: Probe,
    read_file: Callable[[str], str],
    config: ImageConfig,
) -> ReleaseLayout:
    text = read_file(script)
    epmd = _erts_epmd(root, probe) or _path_epmd(probe, f"the release {root} has no ERTS")
    command = (script, *argv[1:])
    kind = release_kind(text)
    if kind == "elixir":
        edits = elixir_edits(script, text, root)
    elif kind == "rebar3":
        vm_args = [f for f in probe.files if is_vm_args(f.removeprefix(f"{root}/"))]
        edits = relx_edits(script, text, root, vm_args)
    else:
        raise ReleaseImageError(
            f"unknown start script {script}: not an Elixir release script (RELEASE_COOKIE) "
            "nor a rebar3/relx one (RELX_): use an image that names itself (docs/cluster.md)"
        )
    return ReleaseLayout(kind, command, epmd, script, edits, config.user, probe.uid)


def _erl_layout(argv: tuple[str, ...], probe: Probe, config: ImageConfig) -> ReleaseLayout:
    for flag in ("-setcookie", "-name", "-sname"):
        if flag in argv:
            raise ReleaseImageError(
                f"the image's command {shlex.join(argv)} passes {flag}: beamfleet names the "
                "node and erl reads the cookie from a file; drop the flag"
            )
    epmd = _path_epmd(probe, "the image runs erl")
    return ReleaseLayout("erl", argv, epmd, None, (), config.user, probe.uid)
