"""Vendor commands from a target profile: templates whose placeholders the harness fills, shell-quoted, and
commands run and timed around the command only.

The timed window of a :class:`Phase` is from just before the process starts to just after it exits; files it
reads or writes are opened before the clock starts.  Nothing else runs inside it but the child's entry in the
reaper's registry (one small file written, well under a millisecond).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import string
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from clauseproof.core import masking, reaper
from clauseproof.core.errors import ClauseproofError


def quoted_placeholders(template: str) -> list[str]:
    """Placeholders written inside quotes in a shell template: shell-quoting their value there would put it
    outside the quotes again (``"{user}"`` with a user ``$(rm -rf ~)`` runs it), so such templates are refused."""
    found: list[str] = []
    quote = ""
    i = 0
    while i < len(template):
        ch = template[i]
        if ch == "\\" and quote != "'":
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        elif ch == "{" and quote:
            end = template.find("}", i)
            if end > i and template[i + 1 : end].isidentifier():
                found.append(template[i : end + 1])
        i += 1
    return found


def template_problem(template: Any, allowed: tuple[str, ...] | list[str] | set[str], *, shell: bool = True) -> str:
    """What makes ``template`` unfit to be a vendor command ("" when it is fit): only bare ``{name}`` placeholders
    of ``allowed`` may stand in it, never inside quotes, never with a conversion (``{user!r}`` would wrap the
    shell-quoted value in quotes of its own and let ``$(…)`` run), a format spec, an index, an attribute or a
    position (``{0}``, ``{host.x}``: tracebacks at best)."""
    if not isinstance(template, str):
        return f"{template!r} is not a string"
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"its braces do not pair ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not name.isidentifier():
            return f"{shown} is not a placeholder: use only bare names, {{{'}, {'.join(sorted(allowed))}}}"
        if conversion or spec:
            return f"{shown} has a conversion or format: write {{{name}}} alone"
        if name not in allowed:
            return f"{shown} is not one of {{{'}, {'.join(sorted(allowed))}}}"
    quoted = quoted_placeholders(template) if shell else []
    if quoted:
        return f"{', '.join(quoted)} inside quotes: the harness shell-quotes every placeholder itself"
    return ""


def fill_command(template: str, **values: str | int) -> str:
    """A vendor command with its placeholders filled, each value shell-quoted (so a template must not quote them
    itself: such a template is refused).  Only bare ``{name}`` placeholders are replaced; nothing of the template
    is interpreted beyond that (no conversion, format spec, index or attribute)."""
    problem = template_problem(template, tuple(values))
    if problem:
        raise ClauseproofError(
            f"the vendor command {template!r} is refused: {problem}",
            checked="placeholders: bare {name} only, outside quotes, each one the harness fills",
            fix="write the placeholders without quotes around them, e.g. --user {user}",
        )
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            out.append(shlex.quote(str(values[name])))
    return "".join(out)


@dataclass
class Phase:
    """One timed step of a backup or restore."""

    name: str
    seconds: float
    command: str

    def evidence(self) -> dict[str, Any]:
        return asdict(self)


def timed(
    name: str,
    args: list[str],
    *,
    stdout: Path | None = None,
    stdin: Path | None = None,
    shell: bool = False,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
) -> Phase:
    """Run a command, timing only its run; a non-zero exit raises with its last error lines.

    The command runs in a session of its own with no terminal and (unless ``stdin`` is given) an empty standard
    input, so a tool that would prompt for a password fails at once instead of waiting for an answer; its process
    group is recorded for ``reap`` while it runs (it would outlive a SIGKILLed run) and killed whole when the run
    is interrupted or the timeout passes."""
    out: IO[bytes] | int = subprocess.PIPE
    inp: IO[bytes] | int = subprocess.DEVNULL
    try:
        if stdout is not None:
            out = open(stdout, "wb")
        if stdin is not None:
            inp = open(stdin, "rb")
        started = time.perf_counter()
        child = subprocess.Popen(
            args if not shell else args[0],
            stdout=out,
            stdin=inp,
            stderr=subprocess.PIPE,
            shell=shell,
            env=masking.child_env(env),
            start_new_session=True,
        )
        reaper.register("tool", child.pid)
        try:
            _, stderr = child.communicate(timeout=timeout)
            seconds = time.perf_counter() - started
        except BaseException:  # timed out or interrupted: the command and whatever it started in its group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise
        finally:
            reaper.unregister(child.pid)
    except subprocess.TimeoutExpired:
        raise ClauseproofError(f"{name} did not finish within {timeout:g} s", checked=_show(args, shell)) from None
    finally:
        for f in (out, inp):
            if f is not None and not isinstance(f, int):
                f.close()
    proc = subprocess.CompletedProcess(child.args, child.returncode, None, stderr)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ClauseproofError(
            f"{name} failed (exit {proc.returncode}): " + " / ".join(err), checked=_show(args, shell)
        )
    return Phase(name=name, seconds=round(seconds, 4), command=_show(args, shell))


def vendor_command(name: str, template: str, target: Any, values: dict[str, str | int], timeout: float = 3600) -> Phase:
    """A profile's vendor command template with its placeholders filled, timed like :func:`timed`.  It runs with
    the target's password (if any) in ``PGPASSWORD`` / ``MYSQL_PWD``, where the engines' clients look for it."""
    env = target.address().client_env(target.dialect)
    return timed(name, [fill_command(template, **values)], shell=True, env=env, timeout=timeout)


def vendor_output(name: str, template: str, target: Any, values: dict[str, str | int], timeout: float) -> str:
    """A profile's vendor command run like :func:`vendor_command`; what it printed on its standard output (written to a
    private file, read back as text). Nothing it prints is executed."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="clauseproof-output-") as d:
        out = Path(d) / "out"
        env = target.address().client_env(target.dialect)
        timed(name, [fill_command(template, **values)], shell=True, env=env, stdout=out, timeout=timeout)
        return out.read_text(encoding="utf-8", errors="replace")


def _show(args: list[str], shell: bool) -> str:
    return args[0] if shell else shlex.join(args)
