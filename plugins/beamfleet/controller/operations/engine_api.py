"""Commands that run beamfleet's Engine API client (``assets/remote/engine_api.py``) on a host.

The operations talk to the Docker Engine API through its unix socket, with request bodies
on standard input, wherever a body may hold a secret (join tokens) or is long (service
specs): the ``docker`` CLI would need those as arguments. One client, shipped as the text
of ``python3 -c``, serves them all.
"""

from __future__ import annotations

import shlex

from pyinfra.api.command import StringCommand
from pyinfra.api.host import Host

from beamfleet.controller.remote_scripts import script_text


def engine_api_command(*argv: str) -> StringCommand:
    """``python3 -c <client> ARGV...``; see the client's docstring for the verbs.

    Example: ``engine_api_command("request", "POST", "/swarm/join")``.
    """
    return StringCommand(
        "python3", "-c", shlex.quote(script_text("engine_api.py")), *map(shlex.quote, argv)
    )


def run_with_secret_stdin(
    host: Host, command: StringCommand, stdin: str, *, show_stdout: bool = False
) -> bool:
    """Run ``command`` at execution time with ``stdin``, printing neither.

    For bodies that hold a secret: nothing of the command's input reaches pyinfra's
    output, nor its output unless ``show_stdout`` (for a command whose standard output is
    known to carry only messages); on failure the command's stderr is shown (Docker's
    messages name the problem and never echo a secret back).

    Call it from a ``FunctionCommand``: then it runs only when the operation executes, and
    the input is never part of a command line (``ps`` on the host, pyinfra's output).
    """
    ok, output = host.run_shell_command(
        command, _stdin=stdin, print_output=False, print_input=False
    )
    if ok and show_stdout:
        for line in output.stdout_lines:
            host.log_styled(line)
    if not ok:
        for line in output.stderr_lines:
            host.log_styled(line, fg="red")
    return bool(ok)
