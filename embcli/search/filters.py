"""`--where` filters on payload fields, compiled to parameterized SQLite.

Grammar (case-insensitive keywords):

    expr  := term (OR term)*
    term  := factor (AND factor)*
    factor:= NOT factor | '(' expr ')' | cond
    cond  := field op value | field [NOT] IN '(' value, ... ')'
           | field IS [NOT] NULL | field BETWEEN value AND value
    op    := = == != <> < <= > >=
    field := name ('.' name)*  |  "quoted name"
    value := 'string' | number | true | false | null

Values are bound as parameters, never pasted into SQL. Size is bounded so that a
pathological filter is a usage error here, not a RecursionError in Python or a
"parser stack overflow" in SQLite (whose parser gives out at ~14 levels of
"(x OR y AND (...))", and whose expression trees at depth 1000).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embcli.errors import UsageError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<qname>"(?:[^"]|"")*")
      | (?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
      | (?P<op><=|>=|!=|<>|==|=|<|>)
      | (?P<punct>[(),.])
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false", "between"}
_BLANK = re.compile(r"\s*\Z")
MAX_LENGTH = 100_000  # characters in the filter
MAX_DEPTH = 12  # nested parentheses and NOTs; the worst SQL they make still parses (tests check)
MAX_CONDITIONS = 500  # AND/OR chains nest in SQLite's tree: 500 + 12 levels stays under 1000
MAX_VALUES = 10_000  # bound parameters, under SQLite's variable limit


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(s: str) -> list[_Tok]:
    if len(s) > MAX_LENGTH:
        raise UsageError(f"--where is {len(s):,} characters long; at most {MAX_LENGTH:,}")
    toks, pos = [], 0
    while pos < len(s):
        if _BLANK.match(s, pos):  # not s[pos:].strip(): that copies the rest at every token
            break
        m = _TOKEN.match(s, pos)
        if not m:
            raise UsageError(f"--where: cannot read {s[pos:].strip()[:20]!r} at character {pos + 1}")
        kind = m.lastgroup or ""
        text, start = m.group(kind), m.start(kind)
        if kind == "word" and text.lower() in _KEYWORDS:
            kind, text = "kw", text.lower()
        toks.append(_Tok(kind, text, start))
        pos = m.end()
    return toks


class _Parser:
    def __init__(self, source: str, column: str) -> None:
        self.source = source
        self.column = column
        self.toks = _tokenize(source)
        self.i = 0
        self.params: list[object] = []
        self.depth = 0
        self.conditions = 0

    def fail(self, what: str) -> UsageError:
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        at = f"at {tok.text!r} (character {tok.pos + 1})" if tok else "at the end"
        return UsageError(f"--where: {what} {at}", hint="e.g. --where \"section = 'games' AND year >= 2020\"")

    def peek(self, kind: str, text: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        t = self.toks[self.i]
        return t.kind == kind and (text is None or t.text == text)

    def take(self, kind: str, text: str | None = None) -> _Tok:
        if not self.peek(kind, text):
            raise self.fail(f"expected {text or kind}")
        self.i += 1
        return self.toks[self.i - 1]

    def parse(self) -> str:
        if not self.toks:
            raise self.fail("empty filter")
        sql = self.expr()
        if self.i != len(self.toks):
            raise self.fail("unexpected")
        return sql

    def expr(self) -> str:
        parts = [self.term()]
        while self.peek("kw", "or"):
            self.i += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.peek("kw", "and"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.peek("kw", "not"):
            self.nest()
            sql = f"NOT ({self.factor()})"
        elif self.peek("punct", "("):
            self.nest()
            sql = self.expr()
            self.take("punct", ")")
        else:
            return self.cond()
        self.depth -= 1
        return sql

    def nest(self) -> None:
        """Step into a NOT or '(' (the current token), refusing what Python or SQLite could not take."""
        if self.depth == MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} levels deep (parentheses and NOT)")
        self.depth += 1
        self.i += 1

    def field(self) -> str:
        names = [self.name()]
        while self.peek("punct", "."):
            self.i += 1
            names.append(self.name())
        path = "$" + "".join('."' + n.replace('"', '""') + '"' for n in names)
        self.params.append(path)
        return f"json_extract({self.column}, ?)"

    def name(self) -> str:
        if self.peek("word"):
            return self.take("word").text
        if self.peek("qname"):
            return self.take("qname").text[1:-1].replace('""', '"')
        raise self.fail("expected a field name")

    def value(self) -> None:
        if len(self.params) >= MAX_VALUES:
            raise self.fail(f"more than {MAX_VALUES:,} values")
        if self.peek("str"):
            self.params.append(self.take("str").text[1:-1].replace("''", "'"))
        elif self.peek("num"):
            text = self.take("num").text
            self.params.append(float(text) if any(c in text for c in ".eE") else int(text))
        elif self.peek("kw", "true") or self.peek("kw", "false"):
            self.params.append(1 if self.take("kw").text == "true" else 0)  # JSON booleans read as 1/0
        else:
            raise self.fail("expected a value ('text', number, true or false)")

    def cond(self) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise self.fail(f"more than {MAX_CONDITIONS} conditions")
        lhs = self.field()
        if self.peek("op"):
            op = self.take("op").text
            op = {"==": "=", "<>": "!="}.get(op, op)
            if self.peek("kw", "null"):
                raise self.fail("compare with null using IS NULL / IS NOT NULL")
            self.value()
            return f"{lhs} {op} ?"
        negate = False
        if self.peek("kw", "not"):
            self.i += 1
            negate = True
            if not self.peek("kw", "in"):
                raise self.fail("expected IN after NOT")
        if self.peek("kw", "in"):
            self.i += 1
            self.take("punct", "(")
            self.value()
            n = 1
            while self.peek("punct", ","):
                self.i += 1
                self.value()
                n += 1
            self.take("punct", ")")
            return f"{lhs} {'NOT IN' if negate else 'IN'} ({', '.join('?' * n)})"
        if self.peek("kw", "is"):
            self.i += 1
            neg = self.peek("kw", "not")
            if neg:
                self.i += 1
            self.take("kw", "null")
            return f"{lhs} IS {'NOT ' if neg else ''}NULL"
        if self.peek("kw", "between"):
            self.i += 1
            self.value()
            self.take("kw", "and")
            self.value()
            return f"{lhs} BETWEEN ? AND ?"
        raise self.fail("expected an operator (=, !=, <, <=, >, >=, IN, IS NULL, BETWEEN)")


def compile_where(expression: str, column: str = "payload") -> tuple[str, list[object]]:
    """SQL condition and its parameters for a filter over JSON ``column``."""
    p = _Parser(expression, column)
    return p.parse(), p.params
