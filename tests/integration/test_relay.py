"""The terminal relay moves a command's output to the user's terminal whole, however fast or slow the
terminal reads: 2 MB through `rootsand run` and `rootsand exec` arrive byte for byte. (Its speed is
measured by bench/relay.py, not tested here.)"""

import os
import pty
import select
import subprocess
import time

from conftest import rootsand_argv
from test_operate import Running

SIZE = 2 * 1024 * 1024
SLOW_BYTES = 256 * 1024  # read slowly at first, as a busy terminal does: the relay's outbox fills


def two_megabytes(path) -> bytes:
    """2 MiB of text as a terminal program prints it: ASCII, tabs, and characters the filter passes
    (including ones from U+0080 to U+00BF, whose UTF-8 encoding starts with C2 as the C1 controls' does)."""
    line = "{:07d}\tplain text, ° ± « » · ½ and a no-break\u00a0space, žluťoučký kůň\n"
    text = "".join(line.format(n) for n in range(SIZE // len(line.format(0).encode()) + 1)).encode()[:SIZE - 1]
    text += b"\n"
    path.write_bytes(text)
    return text


def on_a_terminal(args, cwd, hang_guard: float = 120) -> tuple[int, bytes]:
    """Run rootsand with stdin, stdout and stderr on a pty of ours; read what the terminal receives, slowly
    for the first SLOW_BYTES, then as fast as it comes. Returns (exit status, bytes received)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(rootsand_argv() + args, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, cwd=cwd, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + hang_guard  # a relay that stops reading hangs: fail, do not wait forever
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 4096 if len(received) < SLOW_BYTES else 65536)
            except OSError:  # EIO: rootsand, the last one with the terminal open, has gone
                break
            if not data:
                break
            received += data
            if len(received) < SLOW_BYTES:
                time.sleep(0.005)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), bytes(received)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_two_megabytes_through_run_arrive_whole(tmp_path):
    text = two_megabytes(tmp_path / "big.txt")
    code, received = on_a_terminal(["run", "--", "cat", "big.txt"], cwd=tmp_path)
    assert code == 0
    # The sandbox's pty turns each LF into CR LF, as any terminal's does; the relay adds nothing.
    assert len(received) == len(text) + text.count(b"\n")
    assert received == text.replace(b"\n", b"\r\n")


def test_two_megabytes_through_exec_arrive_whole(tmp_path):
    text = two_megabytes(tmp_path / "big.txt")
    box = Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120")
    try:
        code, received = on_a_terminal(["exec", box.name, "--", "cat", str(tmp_path / "big.txt")], cwd=tmp_path)
    finally:
        box.close()
    assert code == 0
    assert len(received) == len(text) + text.count(b"\n")
    assert received == text.replace(b"\n", b"\r\n")
