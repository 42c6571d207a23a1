"""runtime/child.py: every forked child reports its failure the same way, whatever raised it."""

import os
import signal
import threading
import time

from rootsand.errors import RootsandError
from rootsand.runtime import child


def outcome(body, **how):
    pid, report_r = child.start(body, **how)
    try:
        return child.wait(pid, report_r)
    except RootsandError as e:
        return e.message, e.hint, e.code


def test_the_bodys_status_is_the_childs():
    assert outcome(lambda _fd: None) == 0
    assert outcome(lambda _fd: 3) == 3


def test_a_rootsand_error_arrives_as_it_was():
    def body(_fd):
        raise RootsandError("no such thing", hint="make it", code=127)

    assert outcome(body) == ("no such thing", "make it", 127)


def test_an_os_error_names_its_path():
    def body(_fd):
        os.open("/nonexistent/x", os.O_RDONLY)

    assert outcome(body, failed="cannot join the sandbox") == (
        "cannot join the sandbox: /nonexistent/x: No such file or directory", None, 125)
    assert outcome(body, failed=None)[0] == "/nonexistent/x: No such file or directory"


def test_any_other_failure_is_said_too():
    """exec's first process caught only RootsandError and OSError: anything else was a silent 125."""
    def body(_fd):
        return {}["missing"]

    assert outcome(body, where="rootsand exec") == ("internal error in rootsand exec: KeyError: 'missing'", None, 125)
    message = outcome(body, debug=True)[0]
    assert message.startswith("internal error in sandbox setup: Traceback") and "KeyError" in message


def test_debug_says_where_even_without_pythons_library():
    """In a --rootfs tree Python's library is gone: --debug printed nothing at all (importing traceback
    failed inside the handler). The traceback is then made without it."""
    import sys

    def body(_fd):
        sys.modules["traceback"] = None  # what a root without Python's library does to the import
        return {}["missing"]

    message = outcome(body, debug=True)[0]
    assert message.startswith("internal error in sandbox setup: Traceback (most recent call last):")
    assert 'in body' in message and message.rstrip().endswith("KeyError: 'missing'")


def test_a_death_by_signal_is_128_plus_its_number():
    assert outcome(lambda _fd: os.kill(os.getpid(), signal.SIGTERM)) == 128 + signal.SIGTERM


def test_signals_are_passed_on_while_waiting_and_the_handlers_put_back():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda s, _f: seen.append(s))  # the child inherits it too

    def body(_fd):
        got = []
        signal.signal(signal.SIGUSR1, lambda s, _f: got.append(s))
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        return 7 if got else 1

    stop = threading.Event()

    def poke():  # until the child has one: its handler may not be set yet
        while not stop.wait(0.05):
            os.kill(os.getpid(), signal.SIGUSR1)

    try:
        pid, report_r = child.start(body)
        poker = threading.Thread(target=poke)
        poker.start()
        try:
            assert child.wait(pid, report_r, forward=(signal.SIGUSR1,)) == 7
        finally:
            stop.set()
            poker.join()
        seen.clear()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [signal.SIGUSR1]  # ours again
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_debug_imports_nothing_a_sandbox_could_have_planted(tmp_path):
    """Attack 7: --debug's traceback imported `traceback` in a child that may be in a --rootfs tree by then,
    whose Python library an earlier run could write: a planted traceback.py would have run as rootsand."""
    import sys

    (tmp_path / "traceback.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")

    def body(_fd):
        sys.modules.pop("traceback", None)
        sys.path.insert(0, str(tmp_path))
        return {}["missing"]

    message = outcome(body, debug=True)[0]
    assert message.startswith("internal error in sandbox setup: Traceback (most recent call last):")
    assert not (tmp_path / "ran").exists()
