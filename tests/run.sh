#!/usr/bin/env bash
# The README's test command.
#
# As root on a fresh Debian machine it does all the set-up: installs the system packages rootsand and its
# tests need, prepares the host (/dev/fuse and /dev/net/tun are 0600 on some machines, CI's among them), creates
# an unprivileged test user with subordinate ranges and a second one without, builds a virtual environment
# that user can run (with /usr/bin/python3: root's pyenv python lives where others cannot enter), runs
# pytest as that user, then the root-only tests as root.
#
# As a normal user it runs the tests directly, in ./.venv, and says which host features are missing.
#
# Extra arguments go to both pytest runs (e.g. tests/run.sh -k idmap -x).
set -euo pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
test_user=${ROOTSAND_TEST_USER:-rootsand-test}
nosub_user=${ROOTSAND_NOSUB_USER:-rootsand-nosub}
work=${ROOTSAND_TEST_DIR:-/var/tmp/rootsand-tests}

packages=(uidmap slirp4netns passt fuse-overlayfs iproute2 procps util-linux passwd python3-venv libseccomp2
          busybox-static make gcc libc6-dev libcap2-bin vim-tiny less
          dpkg-dev debhelper build-essential fakeroot devscripts cpio curl git bubblewrap tmux runc crun
          openssl xz-utils nodejs:node npm:npm golang-go:go default-jre-headless:java)
# PACKAGE:COMMAND: the package is there for COMMAND, which another install may give (nodesource's nodejs
# brings its own npm and conflicts with Debian's; a JDK of the host's own gives java)

if [ "$(id -u)" -ne 0 ]; then
    venv=${ROOTSAND_VENV:-$repo/.venv}
    if [ ! -x "$venv/bin/pytest" ]; then
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q -e "$repo[test]"
    fi
    cd "$repo"
    echo "tests/run.sh: what this host offers (rootsand doctor):"
    "$venv/bin/rootsand" doctor || true
    exec "$venv/bin/pytest" -m "not root" -p no:cacheprovider "$@"
fi

say() { printf 'tests/run.sh: %s\n' "$*"; }

# 1. System packages, installed only when missing (apt-get update is the slow part). apt's output is
# shown only when it fails: set -e alone would end the script there without a word.
quietly() {
    local log status=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || status=$?
    if [ $status -ne 0 ]; then
        say "'$*' failed (exit $status):"
        tail -n 40 "$log" >&2
    fi
    rm -f "$log"
    return $status
}
missing=()
for entry in "${packages[@]}"; do
    p=${entry%%:*}
    [ "$p" != "$entry" ] && command -v "${entry#*:}" >/dev/null && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update -q
    quietly apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. The host: unprivileged users need /dev/fuse (fuse-overlayfs) and /dev/net/tun (slirp4netns).
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod -m 0666 /dev/net/tun c 10 200; } 2>/dev/null || true
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229 2>/dev/null || true
chmod 0666 /dev/fuse /dev/net/tun 2>/dev/null || say "warning: cannot open up /dev/fuse or /dev/net/tun"

# 3. The test users: one with two subordinate ranges (several lines per user must work), one with none.
# Their homes are made anew on every run: a test must never pass only because an earlier run left
# something there (the home rule's tests write into the test user's home).
for u in "$test_user" "$nosub_user"; do
    id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
    home=$(getent passwd "$u" | cut -d: -f6)
    case "$home" in /home/?*) ;; *) say "unexpected home $home for $u"; exit 1 ;; esac
    rm -rf "$home" && cp -a /etc/skel "$home" && chown -R "$u:" "$home" && chmod 0755 "$home"
done
# Free ranges, as useradd picks them: fixed ones would share ids with an account that has them (the
# first user useradd made has 100000:65536). Ranges of the test user that overlap nobody's stay as they were.
ranges=$(/usr/bin/python3 "$repo/tests/subids.py" "$test_user" --none "$nosub_user")
say "subordinate ranges: $ranges"

# 4. A copy of the project and a virtual environment the test user can read and run.
rm -rf "$work"
mkdir -p "$work"
tar -C "$repo" --exclude=.git --exclude=.venv --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$work" -xf - --no-same-owner
mv "$work" "$work.tmp" && mkdir -p "$work" && mv "$work.tmp" "$work/src"
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$work/src[test]" 2>&1 | grep -v '^WARNING: Location' || true
"$work/venv/bin/python" -c 'import rootsand, typer, pyroute2, pyseccomp, pytest, hypothesis' \
    || { say "the virtual environment is incomplete"; exit 1; }
chown -R "$test_user:" "$work/src"
chmod -R a+rX "$work"

export ROOTSAND_TEST_USER=$test_user ROOTSAND_NOSUB_USER=$nosub_user ROOTSAND_VENV=$work/venv
status=0

# 5. The tests as the unprivileged user: what rootsand's users will do.
say "running the tests as $test_user"
runuser -u "$test_user" -- env -i HOME="/home/$test_user" USER="$test_user" LOGNAME="$test_user" \
    PATH="$work/venv/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 CI="${CI:-}" \
    ROOTSAND_TEST_USER="$test_user" ROOTSAND_NOSUB_USER="$nosub_user" ROOTSAND_VENV="$work/venv" \
    bash -c 'cd "$1" && shift && exec pytest -m "not root" -p no:cacheprovider "$@"' \
    _ "$work/src" "$@" || status=1

# 6. The tests that need real root (rootsand run by root, other users, host sysctls).
say "running the root-only tests as root"
rc=0
(cd "$work/src" && PATH="$work/venv/bin:$PATH" "$work/venv/bin/pytest" -m root -p no:cacheprovider "$@") \
    || rc=$?
# With a -k or path filter from the caller, no root test may match (pytest's 5); without one that is a failure.
if [ $rc -ne 0 ] && ! { [ $rc -eq 5 ] && [ $# -gt 0 ]; }; then status=1; fi

# 7. The benchmarks, once and small: they must keep working (no timing is judged here). Tools this
# machine lacks (bwrap, podman) are skipped with a line saying so.
if [ $# -eq 0 ]; then
    say "smoke-running the benchmarks (bench/run.py --quick)"
    /usr/bin/python3 "$work/src/bench/run.py" --quick --user "$test_user" --rootsand "$work/venv/bin/rootsand" \
        --json "$work/bench-quick.json" > "$work/bench-quick.log" 2>&1 \
        || { status=1; say "bench/run.py --quick failed:"; tail -20 "$work/bench-quick.log"; }
fi

exit $status
