"""The agent and untrusted profiles run real language runtimes with their default limits, on a host without a
delegated cgroup v2 as much as with one: npm install from a registry stand-in on this machine's loopback,
node, go build, java -version, pip install. And a program that allocates past the memory limit is still
stopped: the limit counts memory a process can write to (RLIMIT_DATA without a memory cgroup), not the
address space V8, Go and the JVM reserve.
"""

import base64
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from conftest import command_stderr, sandbox
from test_proxy import make_wheel

PACKAGES = 40  # tiny0 .. tiny39, each depending on the next three: V8 failed under RLIMIT_AS at 30


def make_tarball(name: str, dependencies: dict) -> bytes:
    files = {"package/package.json": json.dumps({"name": name, "version": "1.0.0", "dependencies": dependencies}),
             "package/index.js": f"module.exports = '{name} works';\n// {'x' * 20000}\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_packages() -> dict:
    out = {}
    for i in range(PACKAGES):
        dependencies = {f"tiny{j}": "1.0.0" for j in range(i + 1, min(PACKAGES, i + 4))}
        out[f"tiny{i}"] = (make_tarball(f"tiny{i}", dependencies), dependencies)
    return out


NPM_PACKAGES = make_packages()


class Registry(http.server.BaseHTTPRequestHandler):
    """An npm registry stand-in: NPM_PACKAGES' metadata and tarballs."""

    protocol_version = "HTTP/1.1"
    requests: list[str] = []

    def do_GET(self):
        Registry.requests.append(self.path)
        name = self.path.strip("/").split("/")[0]
        if name not in NPM_PACKAGES:
            self.send_error(404)
            return
        tarball, dependencies = NPM_PACKAGES[name]
        if self.path == f"/{name}/-/{name}-1.0.0.tgz":
            body, kind = tarball, "application/octet-stream"
        else:
            integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
            dist = {"tarball": f"http://{self.headers['Host']}/{name}/-/{name}-1.0.0.tgz", "integrity": integrity,
                    "shasum": hashlib.sha1(tarball).hexdigest()}
            version = {"name": name, "version": "1.0.0", "dependencies": dependencies, "dist": dist}
            body = json.dumps({"name": name, "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": version}}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        # Said, not only done: rootsand's proxy passes a plain-http answer on as it is and closes the
        # connection after it (one request per connection); an answer that does not say so leaves npm reusing
        # a closed socket, retried after 10 s ('socket hang up').
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def registry():
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry) as httpd:  # daemon threads, each request
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        yield httpd.server_address[1]
        httpd.shutdown()


def test_npm_install_from_a_registry_in_the_agent_profile(registry, tmp_path):
    """Issue 22: V8 reserved more address space than RLIMIT_AS allowed: 'Allocation failed - JavaScript heap
    out of memory', exit 134, on a few dozen packages."""
    Registry.requests.clear()
    url = f"http://host.rootsand.internal:{registry}/"
    r = sandbox("sh", "-c", f"npm install --no-audit --no-fund --no-update-notifier --registry {url} tiny0 "
                "&& node -e 'console.log(require(\"tiny0\"), require(\"tiny39\"))'",
                opts=["--profile", "agent", "--allow-host", f"host.rootsand.internal:{registry}"], cwd=tmp_path,
                timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "tiny0 works tiny39 works"
    assert "/tiny39/-/tiny39-1.0.0.tgz" in Registry.requests
    installed = sorted(p.name for p in (tmp_path / "node_modules").iterdir() if p.name.startswith("tiny"))
    assert installed == sorted(NPM_PACKAGES)
    index = tmp_path / "node_modules" / "tiny0" / "index.js"
    assert index.read_text().startswith("module.exports = 'tiny0 works';") and index.stat().st_uid == os.getuid()
    assert json.loads((tmp_path / "package.json").read_text())["dependencies"] == {"tiny0": "^1.0.0"}


@pytest.mark.parametrize("profile", ["agent", "untrusted"])
def test_node_go_and_java_run_with_the_default_limits(profile, tmp_path):
    (tmp_path / "go.mod").write_text("module hello\n\ngo 1.19\n")
    (tmp_path / "hello.go").write_text('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from go") }\n')
    # V8 reserves its heap and code ranges; wasm reserves 10G per memory: none of it is memory used
    node = ("node -e 'const a = new Array(1e6).fill(\"x\"); new WebAssembly.Memory({initial: 1}); "
            "console.log(\"hello from node\", a.length)'")
    # -buildvcs=false: the agent profile's placeholder .git (an empty directory) is no repository to stamp
    r = sandbox("sh", "-c", f"{node} && go build -buildvcs=false -o hello . && ./hello && java -version",
                opts=["--profile", profile], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hello from node 1000000", "hello from go"]
    assert any(line.startswith("openjdk version") or "Runtime Environment" in line for line in command_stderr(r))
    if profile == "agent":  # the current directory is the user's: the binary is there, theirs
        assert (tmp_path / "hello").stat().st_uid == os.getuid()


def test_pip_installs_a_local_wheel_into_a_venv_in_the_agent_profile(tmp_path):
    (tmp_path / "tinypkg-1.0-py3-none-any.whl").write_bytes(make_wheel())
    r = sandbox("sh", "-c", "python3 -m venv venv && venv/bin/pip install -q --no-index "
                "tinypkg-1.0-py3-none-any.whl && venv/bin/python -c 'import tinypkg; print(tinypkg.VALUE)'",
                opts=["--profile", "agent"], cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "1"
    assert list((tmp_path / "venv" / "lib").glob("python3*/site-packages/tinypkg/__init__.py"))


ALLOCATE = """
import mmap, sys
try:
    {}
    print("allocated")
except (MemoryError, OSError) as e:
    print("refused:", type(e).__name__, getattr(e, "errno", ""))
"""


@pytest.mark.parametrize("what, code", [
    ("4G at once", "b = bytearray(4 << 30)"),
    ("100M at a time, touched", "chunks = [bytearray(b'x' * (100 << 20)) for _ in range(50)]"),
    ("a 4G private anonymous mapping", "m = mmap.mmap(-1, 4 << 30, flags=mmap.MAP_PRIVATE)"),
    # RLIMIT_DATA does not count shared mappings: those above the limit are refused by seccomp
    ("a 2G shared anonymous mapping", "m = mmap.mmap(-1, 2 << 30, flags=mmap.MAP_SHARED)"),
])
def test_an_allocation_past_the_memory_limit_is_stopped(what, code, tmp_path):
    from test_seccomp_policy import memory_cgroup

    r = sandbox("python3", "-c", ALLOCATE.format(code), opts=["--profile", "agent"], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    if memory_cgroup() and "shared" in what:  # the cgroup counts it when touched, and kills then
        return
    assert r.stdout.startswith("refused:"), (what, r.stdout)
    if "mapping" in what:
        assert r.stdout == "refused: OSError 12\n"  # ENOMEM


def test_memory_below_the_limit_is_there(tmp_path):
    code = ("import mmap; b = bytearray(600 << 20); b[-1] = 1; m = mmap.mmap(-1, 900 << 20, flags=mmap.MAP_SHARED); "
            "m[-1] = 1; print(len(b) >> 20, len(m) >> 20)")
    r = sandbox("python3", "-c", code, opts=["--profile", "agent"], cwd=tmp_path, timeout=120)
    assert (r.returncode, r.stdout) == (0, "600 900\n"), r.stderr



RESERVE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
G, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 1 << 30, 0x02, 0x20, 0x4000
def say(what, failed):
    print(what, os.strerror(ctypes.get_errno()) if failed else "ok")
base = libc.mmap(None, 8 * G, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)  # PROT_NONE
say("reserve 8G", base in (None, 2**64 - 1))
say("use 512M of it", libc.mprotect(base, 512 << 20, 3) != 0)
say("use 2G more", libc.mprotect(base + G, 2 * G, 3) != 0)
big = libc.mmap(None, 4 * G, 3, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
say("map 4G writable, MAP_NORESERVE", big in (None, 2**64 - 1))
"""


def test_reserved_address_space_is_free_and_memory_made_writable_counts(tmp_path):
    """What the runtimes do: reserve address space (PROT_NONE), then make parts of it writable as they use it."""
    from test_seccomp_policy import memory_cgroup

    r = sandbox("python3", "-c", RESERVE, opts=["--profile", "untrusted"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if memory_cgroup():  # the cgroup counts pages touched, not mappings: every mapping is made
        return
    assert r.stdout.splitlines() == ["reserve 8G ok", "use 512M of it ok", "use 2G more Cannot allocate memory",
                                     "map 4G writable, MAP_NORESERVE Cannot allocate memory"]
