"""`rootsand attach`'s detach keys (ctrl-p ctrl-q): taken out of what is typed, wherever reads split them."""

import os

import pytest

from rootsand.runtime.terminal import Relay

KEYS = b"\x10\x11"


@pytest.fixture
def relay():
    master, slave = os.openpty()
    relay = Relay(master=master)
    relay.detach_keys = KEYS
    yield relay
    os.close(master)
    os.close(slave)


def typed(relay, *reads) -> bytes:
    return b"".join(relay._before_detach_keys(data) for data in reads)


def test_keys_without_the_sequence_pass_as_they_are(relay):
    assert typed(relay, b"ls -l\n", b"\x03") == b"ls -l\n\x03" and not relay.detached


def test_the_sequence_detaches_and_is_not_passed_on(relay):
    assert typed(relay, b"abc\x10\x11def") == b"abc" and relay.detached


def test_a_sequence_split_between_reads_still_detaches_and_nothing_of_it_passes(relay):
    assert typed(relay, b"abc\x10", b"\x11") == b"abc" and relay.detached


def test_a_lone_ctrl_p_waits_for_the_next_key_then_passes(relay):
    assert relay._before_detach_keys(b"x\x10") == b"x"  # held: it may begin the sequence
    assert relay._before_detach_keys(b"p") == b"\x10p" and not relay.detached


def test_without_detach_keys_nothing_is_held(relay):
    relay.detach_keys = b""
    assert typed(relay, b"\x10", b"\x11") == b"\x10\x11" and not relay.detached


def test_errors_forget_their_own_description_of_stderr():
    """A detached launcher gives its log pipe up at the end: errors.say's own description of it must go too,
    else the log's copier never sees the pipe's end (attack 8, d04)."""
    from rootsand import errors

    r, w = os.pipe()
    try:
        ours = errors._own_stderr(w)
        assert ours != w
        errors.forget_own_stderr()
        os.close(w)
        w = None
        assert os.read(r, 1) == b""  # every write end closed
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
