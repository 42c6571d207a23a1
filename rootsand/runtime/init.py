"""PID 1 of the sandbox: forward signals to the command, reap every zombie, end with the command's status."""

import gc
import os
import signal

# The signals the launcher and PID 1 pass on to the command (README, "How it works"); exec's processes pass
# on all but SIGWINCH.
PASSED_ON_BY_EXEC = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
FORWARDED = PASSED_ON_BY_EXEC + (signal.SIGWINCH,)
# Python ignores these at start-up; a command must get them back at their defaults.
PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)


def exit_status(wait_status: int) -> int:
    """A shell's view of a wait status: the exit code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def reap_until(command_pid: int) -> int:
    """Forward signals to the command and reap children until the command exits; return its status.

    Called with FORWARDED blocked (inherited from the launcher), so that nothing sent before the
    handlers exist is lost: PID 1 drops unhandled signals, but blocked ones stay pending.
    """

    def forward(signum, _frame):
        try:
            os.kill(command_pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    gc.enable()  # off for the start-up (cli/entry.py): PID 1 lives as long as the command
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 125  # the command vanished without a status: cannot happen with a live child
        if pid == command_pid:
            return exit_status(status)


def reset_signals() -> None:
    """Give a process about to exec the default signal dispositions and an empty mask."""
    for sig in FORWARDED + PYTHON_IGNORED:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
