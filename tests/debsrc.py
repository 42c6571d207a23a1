"""A small Debian source package of our own, made on the spot: the reference package build of the tests
and of bench/fakeroot.py, with no download (a mirror that lacks one file must not fail the suite).

It is a real one: a C program with a configure script and a Makefile (build, check, install, distclean),
and debian/ with control, changelog, copyright and a rules file that uses dh. Its override of dh_fixperms
gives files other owners and modes (setuid root, setgid games, a directory of www-data's, a file of an id
with no name, an unreadable conffile), as real packages do, so that a build that records owners wrongly
shows in the .deb. `Rules-Requires-Root: binary-targets` makes dpkg-buildpackage build it as root (or
under -rfakeroot): with `no`, dpkg-deb would write every owner as root/root and compare nothing.

    python3 tests/debsrc.py DIR [--units N]   # makes DIR/rootsand-demo-1.0; prints its path

Stdlib only: bench/fakeroot.py imports it too."""

import argparse
import os

NAME, VERSION = "rootsand-demo", "1.0"

MAIN_C = r"""/* rootsand-demo: counts the lines and bytes of its input (the tests' package). */
#include <stdio.h>
#include <string.h>

unsigned long extra(void);

int main(int argc, char **argv)
{
    unsigned long lines = 0, bytes = 0;
    int c;

    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("rootsand-demo %s (%lu)\n", VERSION, extra());
        return 0;
    }
    while ((c = getchar()) != EOF) {
        bytes++;
        if (c == '\n')
            lines++;
    }
    printf("%lu %lu\n", lines, bytes);
    return 0;
}
"""

# The bench's bigger build: N more units for the compiler, each a little work for the optimizer.
UNIT_C = r"""unsigned long unit{n}(unsigned long x)
{{
    unsigned long acc = {n};
    for (unsigned long i = 0; i < x % 97 + 3; i++)
        acc = acc * 6364136223846793005UL + (i ^ (acc >> 13));
    return acc;
}}
"""

CONFIGURE = """#!/bin/sh
# Not autoconf's: takes --prefix=DIR and ignores the other options dh_auto_configure passes.
prefix=/usr/local
for arg in "$@"; do
    case $arg in --prefix=*) prefix=${arg#--prefix=} ;; esac
done
printf 'prefix = %s\\n' "$prefix" > config.mk
"""

MAKEFILE = """prefix = /usr/local
-include config.mk
VERSION = {version}
CFLAGS ?= -O2 -g
OBJECTS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

all: rootsand-demo

rootsand-demo: $(OBJECTS)
\t$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJECTS)

src/%.o: src/%.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -DVERSION='"$(VERSION)"' -c -o $@ $<

# As gnulib's maint.mk does, a .git directory means a git checkout, where git must answer: a .git that
# appeared in a release tree breaks the check.
check: rootsand-demo
\t@if test -d .git; then git describe --always >/dev/null; fi
\t@test "$$(printf 'one\\ntwo\\n' | ./rootsand-demo)" = "2 8"
\t@echo "PASS: rootsand-demo counts lines and bytes"
\t@./rootsand-demo --version | grep -q '^rootsand-demo $(VERSION) '
\t@echo "PASS: rootsand-demo --version"

install: rootsand-demo
\tinstall -d $(DESTDIR)$(prefix)/bin
\tinstall -m 0755 rootsand-demo $(DESTDIR)$(prefix)/bin/rootsand-demo

clean:
\trm -f rootsand-demo src/*.o

distclean: clean
\trm -f config.mk

.PHONY: all check install clean distclean
"""

CONTROL = f"""Source: {NAME}
Section: utils
Priority: optional
Maintainer: rootsand tests <tests@rootsand.invalid>
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
Rules-Requires-Root: binary-targets

Package: {NAME}
Architecture: any
Depends: ${{shlibs:Depends}}, ${{misc:Depends}}
Description: line and byte counter (the rootsand tests' package)
 A package built by rootsand's tests in the fakeroot profile and with
 dpkg-buildpackage -rfakeroot; its files have several owners and modes.
"""

CHANGELOG = f"""{NAME} ({VERSION}) unstable; urgency=medium

  * Made by rootsand's tests.

 -- rootsand tests <tests@rootsand.invalid>  Sat, 01 Jan 2022 00:00:00 +0000
"""

COPYRIGHT = f"""Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {NAME}

Files: *
Copyright: rootsand's authors
License: public-domain
 Written for rootsand's tests; no rights reserved.
"""

# Owners and modes set after dh_fixperms, as packages with setuid helpers and state directories do.
RULES = f"""#!/usr/bin/make -f
pkg = debian/{NAME}

%:
\tdh $@

override_dh_fixperms:
\tdh_fixperms
\tprintf '#!/bin/sh\\nexec {NAME} "$$@"\\n' > $(pkg)/usr/bin/{NAME}-admin
\tchown root:root $(pkg)/usr/bin/{NAME}-admin
\tchmod 4755 $(pkg)/usr/bin/{NAME}-admin
\tinstall -d $(pkg)/usr/games
\tcp $(pkg)/usr/bin/{NAME}-admin $(pkg)/usr/games/{NAME}-score
\tchown root:games $(pkg)/usr/games/{NAME}-score
\tchmod 2755 $(pkg)/usr/games/{NAME}-score
\tln -s ../bin/{NAME} $(pkg)/usr/games/{NAME}
\tinstall -d -m 0750 $(pkg)/var/lib/{NAME}
\techo state > $(pkg)/var/lib/{NAME}/state
\tchown -R www-data:www-data $(pkg)/var/lib/{NAME}
\tinstall -d $(pkg)/etc
\techo 'secret = 1' > $(pkg)/etc/{NAME}.conf
\tchown root:adm $(pkg)/etc/{NAME}.conf
\tchmod 0640 $(pkg)/etc/{NAME}.conf
\tinstall -d $(pkg)/usr/share/{NAME}
\techo data > $(pkg)/usr/share/{NAME}/unnamed
\tchown 4321:4321 $(pkg)/usr/share/{NAME}/unnamed
"""

# What the .deb holds, as `dpkg-deb -c` lists it (mode, owner, name), for the tests to assert.
OWNED = {
    f"./usr/bin/{NAME}": ("-rwxr-xr-x", "root/root"),
    f"./usr/bin/{NAME}-admin": ("-rwsr-xr-x", "root/root"),
    f"./usr/games/{NAME}-score": ("-rwxr-sr-x", "root/games"),
    f"./var/lib/{NAME}/": ("drwxr-x---", "www-data/www-data"),
    f"./var/lib/{NAME}/state": ("-rw-r--r--", "www-data/www-data"),
    f"./etc/{NAME}.conf": ("-rw-r-----", "root/adm"),
    f"./usr/share/{NAME}/unnamed": ("-rw-r--r--", "4321/4321"),
}


def make(where: str, units: int = 0) -> str:
    """Writes the unpacked source tree WHERE/rootsand-demo-1.0 (WHERE is made if missing) with `units`
    extra C files, and returns its path. Every file is the caller's, readable by all."""
    tree = os.path.join(where, f"{NAME}-{VERSION}")
    files = {
        "src/main.c": MAIN_C,
        "src/extra.c": "".join(f"unsigned long unit{n}(unsigned long);\n" for n in range(units))
        + "unsigned long extra(void)\n{\n    unsigned long x = 1;\n"
        + "".join(f"    x = unit{n}(x);\n" for n in range(units)) + "    return x;\n}\n",
        "configure": CONFIGURE,
        "Makefile": MAKEFILE.format(version=VERSION),
        "debian/control": CONTROL,
        "debian/changelog": CHANGELOG,
        "debian/copyright": COPYRIGHT,
        "debian/rules": RULES,
        "debian/source/format": "3.0 (native)\n",
    }
    files.update({f"src/unit{n}.c": UNIT_C.format(n=n) for n in range(units)})
    for name, text in files.items():
        path = os.path.join(tree, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755 if name in ("configure", "debian/rules") else 0o644)
    return tree


def main():
    p = argparse.ArgumentParser(description="Make the unpacked source of the tests' Debian package.")
    p.add_argument("dir", help=f"where to make {NAME}-{VERSION}")
    p.add_argument("--units", type=int, default=0, help="extra C files, for a bigger build (bench/fakeroot.py)")
    args = p.parse_args()
    print(make(args.dir, args.units))


if __name__ == "__main__":
    main()
