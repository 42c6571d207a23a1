"""A profile's own seccomp rules: a TOML file of `[[rule]]` tables, read and checked in the spec stage.

Pure: the file is read, nothing else; a system call's name is checked against a table of the names
libseccomp knows (syscall_names.py), so no libseccomp is loaded before the filter is built.
"""

from __future__ import annotations

import errno as errno_module
import re
if False:  # for the type checkers only: importing typing costs start-up time on every run
    from typing import Any, NoReturn

from rootsand.config import tomlfile
from rootsand.errors import RootsandError
from rootsand.security.seccomp import syscall_names
from rootsand.security.seccomp.rules import MAX_ERRNO, OPS, U64, Rule


class _RuleFile:
    """A rule file's text, to point an error at the line of a `[[rule]]` table or of a key in it."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.locator = tomlfile.Locator(text)

    def line_of(self, index: int | None, key: str | None) -> int | None:
        parts = ("rule", index) if index is not None else ()
        return self.locator.line_of(parts + ((key,) if key else ()))

    def fail(self, message: str, index: int | None = None, key: str | None = None, sub: str = "",
             hint: str | None = None) -> NoReturn:
        line = self.line_of(index, key)
        where = f"seccomp rules {self.path}" + (f", line {line}" if line else "")
        what = ".".join(([f"rule[{index}]"] if index else []) + ([key] if key else [])) + sub  # rule[2].args[1].op
        text = f"{where}: {what}: {message}" if what else f"{where}: {message}"
        raise RootsandError(text.replace("\n", "\\n"), hint)


_type_name = tomlfile.type_name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_rule_file(path: str) -> list[Rule]:
    """Rules from a TOML file of `[[rule]]` tables; every problem is a RootsandError naming file, line and key.

        [[rule]]
        syscall = "ptrace"
        errno = "EPERM"                  # a name from errno(3) or a number; EPERM when absent
        args = [{ index = 0, op = "MASKED_EQ", mask = 0x10000000, value = 0x10000000 }]
        why = "what it stops"            # optional
    """
    text, data = tomlfile.read(path, "seccomp rules")
    file = _RuleFile(path, text)
    for key in data:
        if key != "rule":
            file.fail(f"unknown key {key!r}", key=key, hint="a rule file holds [[rule]] tables")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        file.fail(f"expected [[rule]] tables, got {_type_name(tables)}", key="rule")
    return [_rule(file, index, table) for index, table in enumerate(tables, 1)]


def _rule(file: _RuleFile, index: int, table: Any) -> Rule:
    if not isinstance(table, dict):
        file.fail(f"expected a table, got {_type_name(table)}", index)
    for key in table:
        if key not in ("syscall", "errno", "args", "why"):
            file.fail(f"unknown key {key!r}", index, key, hint="a rule takes syscall, errno, args and why")
    if "syscall" not in table:
        file.fail('missing key "syscall"', index)
    name = table["syscall"]
    if not isinstance(name, str):
        file.fail(f"expected a system call name, got {_type_name(name)}", index, "syscall")
    if not re.fullmatch(r"[a-z0-9_]{1,64}", name) or name not in syscall_names.NAMES:
        file.fail(f"unknown system call {name!r}", index, "syscall", hint="names as in syscalls(2), like ptrace")
    why = table.get("why", "")
    if not isinstance(why, str):
        file.fail(f"expected a string, got {_type_name(why)}", index, "why")
    return Rule(name, _errno(file, index, table.get("errno", "EPERM")), _args(file, index, table.get("args", [])),
                why.replace("\n", " "))


def _errno(file: _RuleFile, index: int, value: Any) -> int:
    if isinstance(value, str):
        number = getattr(errno_module, value, None) if re.fullmatch(r"E[A-Z0-9]+", value) else None
        if not _is_int(number):
            file.fail(f"unknown errno name {value!r}", index, "errno", hint="names as in errno(3), like EPERM")
        return number
    if not _is_int(value):
        file.fail(f"expected an errno name or number, got {_type_name(value)}", index, "errno")
    if not 1 <= value <= MAX_ERRNO:
        file.fail(f"errno {value} is out of range 1..{MAX_ERRNO}", index, "errno")
    return value


def _args(file: _RuleFile, index: int, value: Any) -> tuple[tuple[int, str, int, int], ...]:
    if not isinstance(value, list):
        file.fail(f"expected an array of tables, got {_type_name(value)}", index, "args")
    out: list[tuple[int, str, int, int]] = []
    for n, arg in enumerate(value, 1):
        def fail(message: str, key: str = "", hint: str | None = None) -> NoReturn:
            file.fail(message, index, "args", f"[{n}]" + (f".{key}" if key else ""), hint)

        if not isinstance(arg, dict):
            fail(f"expected a table, got {_type_name(arg)}")
        for key in arg:
            if key not in ("index", "op", "value", "mask"):
                fail(f"unknown key {key!r}", key, "an argument takes index, op, value and (for MASKED_EQ) mask")
        for key in ("index", "op", "value"):
            if key not in arg:
                fail(f'missing key "{key}"')
        number = arg["index"]
        if not _is_int(number) or not 0 <= number <= 5:
            fail(f"expected an argument index 0..5, got {number!r}", "index")
        if any(number == earlier[0] for earlier in out):
            fail(f"argument {number} is compared twice; libseccomp allows one comparison per argument", "index")
        op = arg["op"]
        if op not in OPS:
            fail(f"unknown operator {op!r}", "op", f"one of {', '.join(OPS)}")
        for key in ("value", "mask"):
            if key in arg and (not _is_int(arg[key]) or not 0 <= arg[key] <= U64):
                fail(f"expected an integer 0..2**64-1, got {arg[key]!r}", key)
        if op == "MASKED_EQ":
            if "mask" not in arg:
                fail('missing key "mask": MASKED_EQ compares (argument & mask) with value')
            out.append((number, op, arg["mask"], arg["value"]))
        else:
            if "mask" in arg:
                fail("mask is only for MASKED_EQ", "mask")
            out.append((number, op, arg["value"], 0))
    return tuple(out)
