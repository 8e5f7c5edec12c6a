"""Build tests/data/stdlib-docs.jsonl: first paragraphs of standard-library docstrings, labelled by module.

Real, small and topical: eight modules with distinct subjects (maths, networking, turtle
graphics, syntax trees, terminal UIs, logging, archives, locales), at most 40 documented
names each. Run with the Python that the tests use: python tests/data/make_stdlib.py
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import orjson

MODULES = {
    "math": ["math"],
    "socket": ["socket"],
    "turtle": ["turtle"],
    "ast": ["ast"],
    "curses": ["curses"],
    "logging": ["logging"],
    "archives": ["tarfile", "zipfile"],
    "locale": ["locale"],
}
PER_LABEL = 40
OUT = Path(__file__).with_name("stdlib-docs.jsonl")


def main() -> None:
    seen: set[str] = set()
    with open(OUT, "wb") as out:
        for label, modules in MODULES.items():
            rows = []
            for name in modules:
                mod = importlib.import_module(name)
                for attr, obj in sorted(inspect.getmembers(mod)):
                    doc = inspect.getdoc(obj) if not attr.startswith("_") else None
                    if not doc or not (inspect.isroutine(obj) or inspect.isclass(obj)):
                        continue
                    text = " ".join(doc.split("\n\n")[0].split())
                    if len(text.split()) >= 4 and text not in seen:
                        seen.add(text)
                        rows.append({"id": f"{name}.{attr}", "text": text, "module": label})
            for row in rows[:PER_LABEL]:
                out.write(orjson.dumps(row) + b"\n")


if __name__ == "__main__":
    main()
