"""Small TOML files a user wrote (profiles, seccomp rule files): reading them safely, pointing an error at
the line of a key, and writing values back as TOML.

Every failure to read is one RootsandError that names the file, and the line where one is known.
"""

import re

from rootsand.errors import RootsandError

MAX_FILE_SIZE = 1 << 20  # these files are a few hundred bytes; this keeps `-p /dev/zero` from eating memory


def read(path: str, what: str, known: tuple | None = None) -> tuple[str, dict]:
    """The text and the parsed table of the TOML file at `path`; `what` ("profile") starts every error.
    `known` is (text, the table as JSON) of an earlier parse: used when the file's text is exactly that."""
    import os
    import stat

    try:
        # Non-blocking: a FIFO planted where a profile is expected must not hang us; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise RootsandError(f"{what} {path}: cannot read it: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RootsandError(f"{what} {path}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise RootsandError(f"{what} {path}: cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_SIZE:
        raise RootsandError(f"{what} {path}: larger than {MAX_FILE_SIZE} bytes, not a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise RootsandError(f"{what} {path}, line {line}: not UTF-8 text (a binary file?)") from None
    if known is not None and known[0] == text:
        import json  # fresh objects each time: a caller may change the table it gets

        return text, json.loads(known[1])
    import tomllib  # ~5 ms with typing and datetime: not imported for a built-in profile

    try:
        return text, tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, and int() refusing thousands of digits
        raise RootsandError(f"{what} {path}: invalid TOML: {e}") from None
    except RecursionError:
        raise RootsandError(f"{what} {path}: invalid TOML: nested too deeply") from None


def parsed_module(directory: str) -> str:
    """The source of a module holding the parsed tables of the *.toml files in `directory`, so that a
    run with a built-in profile need not import tomllib (tests/unit/test_builtin_profiles.py keeps it
    current)."""
    import json
    import os
    import tomllib

    lines = ['"""Generated from the *.toml files beside it: rootsand.config.tomlfile.parsed_module(). Do not edit."""',
             "", "PARSED = {"]
    for name in sorted(os.listdir(directory)):
        if name.endswith(".toml"):
            with open(os.path.join(directory, name), "rb") as f:
                text = f.read().decode("utf-8")  # as read() decodes it: no newline translation
            # Keys in the file's order, as tomllib gives them: the order rlimits are set and shown in.
            table = json.dumps(tomllib.loads(text), allow_nan=False)
            lines.append(f"    {name!r}: ({text!r}, {table!r}),")
    return "\n".join(lines + ["}", ""])


# ---------------------------------------------------------------------------------------------- locating keys

_HEADER_RE = re.compile(r"\s*\[(\[?)([^\[\]]+)\]\]?\s*(?:#.*)?$")


class _Section:
    """One table of the file as written: its header's name and line, and the lines of its body."""

    __slots__ = ("name", "array", "line", "body")

    def __init__(self, name: str, array: bool, line: int | None):
        self.name = name  # "" for the keys before the first header
        self.array = array  # [[name]]
        self.line = line  # 1-based line of the header
        self.body: list[tuple[int, str]] = []  # (line number, text)


class Locator:
    """The line where a key is written, from the text's table headers (a heuristic, good for hand-written
    files). A key is a tuple of parts: ("security", "seccomp"), or ("mount", 3, "src") for the key src of
    the third [[mount]] table."""

    def __init__(self, text: str):
        self.sections = [_Section("", False, None)]
        for number, line in enumerate(text.split("\n"), 1):
            m = _HEADER_RE.match(line)
            if m:
                name = ".".join(part.strip().strip("\"'") for part in m.group(2).split("."))
                self.sections.append(_Section(name, bool(m.group(1)), number))
            else:
                self.sections[-1].body.append((number, line))

    def line_of(self, parts: tuple) -> int | None:
        def find(section: _Section, rest: tuple) -> int | None:
            if rest:
                key = re.escape(str(rest[0]))
                pattern = re.compile(rf"\s*(?:{key}|\"{key}\"|'{key}')\s*[=.]")
                for number, line in section.body:
                    if pattern.match(line):
                        return number
            return section.line

        if len(parts) >= 2 and isinstance(parts[1], int):  # mount[N]...: the N-th [[mount]]
            tables = [s for s in self.sections if s.array and s.name == parts[0]]
            if parts[1] <= len(tables):
                return find(tables[parts[1] - 1], parts[2:])
            return find(self.sections[0], parts[:1])  # written as an inline array
        for cut in range(len(parts), 0, -1):
            name = ".".join(str(p) for p in parts[:cut])
            for section in self.sections:
                if section.name == name and not section.array:
                    return find(section, parts[cut:])
        return find(self.sections[0], parts)


def key_text(parts: tuple) -> str:
    """("mount", 3, "src") as mount[3].src."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else toml_string(part)
            out += f".{text}" if out else text
    return out


def type_name(value) -> str:
    names = {"bool": "boolean", "int": "integer", "float": "float", "str": "string", "list": "array",
             "dict": "table", "datetime": "date-time", "date": "date", "time": "time"}
    return names.get(type(value).__name__, type(value).__name__)


# ---------------------------------------------------------------------------------------------- writing

def toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value) -> str:
    """One value in TOML syntax (arrays and inline tables included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dump_toml(doc: dict, header: str = "") -> str:
    """A document of plain values as TOML: scalars first, then [tables], then [[arrays of tables]]."""
    lines = [header] if header else []

    def is_table_array(v):
        return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)

    for key, value in doc.items():
        if not isinstance(value, dict) and not is_table_array(value):
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{toml_key(key)}]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    for key, value in doc.items():
        if is_table_array(value):
            for item in value:
                lines += ["", f"[[{toml_key(key)}]]"] + [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"
