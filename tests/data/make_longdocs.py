"""Build tests/data/stdlib-longdocs.jsonl and stdlib-longdocs-queries.jsonl: long real documents, and
known-item queries whose answer lies past the model's first 256 tokens.

A document is one standard-library module as ``pydoc`` would show it, in plain text: the module's
docstring, then every public function and class defined there (sorted by name) with its signature
and docstring, cut at a member boundary after MAX_CHARS characters. A query is the first line of one
member's docstring; its target is the module. Queries are kept only when the member's section starts
past the document's first 256 tokens (by the built-in model's tokenizer; a model that truncates at
256 never sees the answer) and their text appears in no other document. At most QUERIES_PER_DOC per
module, spread over the document; documents under MIN_TOKENS tokens are left out.

Run with the Python that the tests use (the text comes from its standard library):
    python tests/data/make_longdocs.py
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from pathlib import Path

import orjson
from tokenizers import Tokenizer

HERE = Path(__file__).parent
TOKENIZER = HERE.parent.parent / "embcli" / "builtin" / "all-MiniLM-L6-v2" / "tokenizer.json"
DOCS = HERE / "stdlib-longdocs.jsonl"
QUERIES = HERE / "stdlib-longdocs-queries.jsonl"

MODULES = [
    "abc",
    "argparse",
    "ast",
    "base64",
    "bdb",
    "binascii",
    "bisect",
    "bz2",
    "calendar",
    "cmd",
    "codecs",
    "collections",
    "colorsys",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "ctypes",
    "curses",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "doctest",
    "email.utils",
    "enum",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "getopt",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html.parser",
    "http.client",
    "http.cookies",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "math",
    "mimetypes",
    "mmap",
    "multiprocessing.pool",
    "netrc",
    "numbers",
    "operator",
    "optparse",
    "os.path",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "pprint",
    "pstats",
    "pyclbr",
    "queue",
    "quopri",
    "random",
    "re",
    "reprlib",
    "rlcompleter",
    "runpy",
    "sched",
    "secrets",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "symtable",
    "sysconfig",
    "tabnanny",
    "tarfile",
    "telnetlib",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "trace",
    "traceback",
    "turtle",
    "typing",
    "unicodedata",
    "unittest.mock",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "wave",
    "weakref",
    "webbrowser",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
    "zoneinfo",
]
MAX_CHARS = 6_000  # ~1,300-1,500 tokens: five or more windows of the model's 256
MIN_TOKENS = 768  # three windows at least
HEAD_TOKENS = 256  # the built-in model's max length
QUERIES_PER_DOC = 3
MIN_QUERY_WORDS = 5


def members(mod: object) -> list[tuple[str, str, str]]:
    """(name, signature, docstring) of the public functions and classes the module itself defines."""
    out = []
    for name, obj in sorted(inspect.getmembers(mod)):
        if name.startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != mod.__name__:
            continue
        doc = inspect.getdoc(obj)
        if not doc:
            continue
        out.append((name, _signature(obj), doc))
        if inspect.isclass(obj):
            for mname, meth in sorted(vars(obj).items()):
                mdoc = inspect.getdoc(meth) if not mname.startswith("_") and inspect.isroutine(meth) else None
                if mdoc:
                    out.append((f"{name}.{mname}", _signature(meth), mdoc))
    return out


def _signature(obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return sig if len(sig) < 120 else "(...)"


def document(mod: object) -> tuple[str, list[tuple[int, str, str]]]:
    """The module's text, and (offset, member name, first docstring line) for each member in it."""
    head = f"{mod.__name__}\n\n{inspect.getdoc(mod) or ''}".strip()
    text, placed = head[:MAX_CHARS], []
    for name, sig, doc in members(mod):
        section = f"\n\n{name}{sig}\n    " + doc.replace("\n", "\n    ")
        if len(text) + len(section) > MAX_CHARS:
            break
        placed.append((len(text) + 2, name, doc.split("\n")[0].strip()))
        text += section
    return text, placed


def main() -> None:
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_truncation()
    tok.no_padding()
    docs: list[dict] = []
    candidates: list[tuple[str, int, str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules still have docs
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            text, placed = document(mod)
            enc = tok.encode(text, add_special_tokens=False)
            if len(enc.ids) < MIN_TOKENS:
                continue
            head_end = enc.offsets[HEAD_TOKENS - 1][1]  # the last character the model sees truncated
            docs.append({"id": name, "text": text, "tokens": len(enc.ids)})
            late = [(at, member, line) for at, member, line in placed if at > head_end]
            late = [p for p in late if len(p[2].split()) >= MIN_QUERY_WORDS and not p[2].startswith(p[1])]
            step = max(1, len(late) // QUERIES_PER_DOC)
            candidates += [(name, at, member, line) for at, member, line in late[::step][:QUERIES_PER_DOC]]
    texts = {d["id"]: d["text"] for d in docs}
    seen: set[str] = set()
    with open(QUERIES, "wb") as out:
        for module, at, member, line in candidates:
            others = any(line in t for m, t in texts.items() if m != module)
            if others or line in seen or re.fullmatch(r"[\W\d_]*", line):
                continue
            seen.add(line)
            query = {"id": f"{module}.{member}", "text": line, "target": module, "offset": at}
            out.write(orjson.dumps(query) + b"\n")
    with open(DOCS, "wb") as out:
        for d in docs:
            out.write(orjson.dumps({"id": d["id"], "title": f"Python module {d['id']}", "text": d["text"]}) + b"\n")


if __name__ == "__main__":
    main()
