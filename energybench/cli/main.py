"""The `energybench` command group and its entry point: one module per command (train, eval,
sample, report, reproduce, plot, list, data), options shared in `cli.options`.

Every user error (missing data, unknown name, bad option, corrupt checkpoint) ends in one line on
stderr and exit status 2 (3: finished, but some metrics could not run here; 130: stopped).
"""

from __future__ import annotations

import faulthandler
import os
import sys

import click

from energybench.cli.data import data
from energybench.cli.eval import eval_cmd
from energybench.cli.list import list_cmd
from energybench.cli.options import echo
from energybench.cli.plot import plot
from energybench.cli.report import report
from energybench.cli.reproduce import reproduce
from energybench.cli.sample import sample
from energybench.cli.train import train
from energybench.core.errors import SomeNotComputed, UserError
from energybench.core.torchrun import launched_by_torchrun


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="energybench")
def cli():
    """Train and evaluate classifiers that are also energy-based generative models."""


for _command in (train, eval_cmd, sample, report, reproduce, plot, list_cmd, data):
    cli.add_command(_command)


def _say_error(message: str, kind: str = "error") -> None:
    """One line on stderr, whatever the message holds (newlines, undecodable path bytes)."""
    echo(f"energybench: {kind}: {' '.join(str(message).split())}", err=True)


def _os_error_text(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    fix = {28: "free some disk space", 27: "free some disk space", 13: "choose a writable location",
           30: "choose a writable location", 36: "use a shorter path"}.get(exc.errno, "check the path")
    return f"{exc.strerror or exc}{where}; {fix} and run the command again"


def _terminate(signum, frame):
    raise KeyboardInterrupt  # so `finally` blocks remove temporary files and release locks


def main(argv=None):
    import signal

    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        cli.main(args=argv, prog_name="energybench", standalone_mode=False)
    except UserError as exc:  # 2: bad input; 3: finished, but some metrics could not run here
        _say_error(exc.template, "incomplete" if isinstance(exc, SomeNotComputed) else "error")
        sys.exit(exc.exit_status)
    except click.exceptions.Abort:
        echo(_stopped_text("aborted"), err=True)
        sys.exit(130)
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _say_error(f"{exc.format_message()}{hint}")
        sys.exit(2)
    except click.ClickException as exc:
        _say_error(exc.format_message())
        sys.exit(exc.exit_code)
    except OSError as exc:  # disk full, permissions, a path that is not what it should be
        _say_error(_os_error_text(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        echo(_stopped_text("interrupted"), err=True)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def process_main() -> None:
    """The process's entry point (`energybench`, `python -m energybench`, what torchrun starts).

    Under torchrun a process that has finished its command, left the process group and written
    its records ends with `os._exit`, not through the interpreter's teardown: there torch's C++
    communication threads can still be letting go of their last work, and a thread that needs the
    GIL once the interpreter is finalizing aborts the process (SIGABRT, "terminate called without
    an active exception"), turning a finished job into a failed one. Python's multiprocessing ends
    its worker processes the same way. faulthandler is on, so any abort names the Python lines
    each thread was at."""
    faulthandler.enable(all_threads=True)
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    if launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _exit_status(code) -> int:
    """SystemExit's code as the process's exit status (None: 0; a message: printed, 1)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


def _stopped_text(what: str) -> str:
    """One line for a stop from outside: under torchrun the usual reason is that another rank
    failed and torchrun ended the others."""
    if launched_by_torchrun():
        return (f"energybench: rank {os.environ.get('RANK', '?')} stopped by torchrun (another process of "
                f"the job failed or was stopped); run the same command again to resume: finished work is kept")
    return f"energybench: {what}"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
