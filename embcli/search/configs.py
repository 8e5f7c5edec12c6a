"""Retrieval configurations from one line of text: what ``embcli eval --config`` compares.

A config string is read like ``search``'s own flags, so what a user tries on the command line
is what they evaluate::

    dense                                  the index as it is (the default)
    --rescore 4        rescore=4           re-rank 4·k candidates of a compact index by floats
    --expansion-search 256  --ef 256  ef=256   HNSW candidate list
    --exact            exact               brute force (switches need no value)
    --where "year >= 2020"  where=EXPR     payload filter
    --full-scan-threshold N
    --query-prompt TEXT  --prompt-name NAME  -m/--model DIR   how text queries are embedded
    index=PATH  --index PATH               search this index (repeat: several searched as one)
    name=LABEL  --name LABEL               the column's label (default: the config's text)

Words are split as a shell would (quote values with spaces). Every setting lands on the
existing search path: ``SearchOptions`` (how hits are found) and ``QueryOptions`` fields (how
text queries are embedded), by name.

    hybrid  --hybrid  lexical  --lexical   retrieval mode (dense is the default)
    --fusion rrf|linear  --rrf-k N  --alpha A  --fusion-depth N   how hybrid fuses

    --group-by FIELD  --group-fusion max|sum  --group-top N   one hit per value of FIELD (an index
                                           of `embed --chunk` output: its documents, by ``parent``);
                                           the judged doc ids are then the FIELD's values

A setting whose ``SearchOptions`` field this version lacks is a usage error saying it is not
available in this version.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field

from embcli.errors import UsageError
from embcli.search.query import QueryOptions, SearchOptions

# Mode words -> the SearchOptions fields that select them. A mode whose fields SearchOptions
# lacks is not in this version: when search grows it, these settings switch it on here too.
# (If the field names differ, change them here: nothing else in eval names a mode.)
MODES: dict[str, dict[str, object]] = {
    "dense": {},
    "hybrid": {"mode": "hybrid"},
    "lexical": {"mode": "lexical"},
}


@dataclass(frozen=True)
class Flag:
    """One setting: where its value goes (``search``: SearchOptions, ``query``: QueryOptions, or ``index``/
    ``name``: the config's own) and the field it sets."""

    target: str
    attr: str
    kind: type = str  # int, float, str, or bool (a switch: takes no value)
    minimum: int | None = None


FLAGS: dict[str, Flag] = {
    "--exact": Flag("search", "exact", bool),
    "--rescore": Flag("search", "rescore", int, 0),
    "--expansion-search": Flag("search", "expansion_search", int, 1),
    "--ef": Flag("search", "expansion_search", int, 1),
    "--where": Flag("search", "where"),
    "--full-scan-threshold": Flag("search", "full_scan_threshold", int, 0),
    "--hybrid": Flag("mode", "hybrid", bool),
    "--lexical": Flag("mode", "lexical", bool),
    "--fusion": Flag("search", "fusion"),
    "--rrf-k": Flag("search", "rrf_k", float),
    "--alpha": Flag("search", "alpha", float),
    "--fusion-depth": Flag("search", "depth", int, 1),
    "--group-by": Flag("search", "group_by"),
    "--group-fusion": Flag("search", "group_fusion"),
    "--group-top": Flag("search", "group_top", int, 1),
    "--query-prompt": Flag("query", "prompt"),
    "--prompt-name": Flag("query", "prompt_name"),
    "--model": Flag("query", "model"),
    "-m": Flag("query", "model"),
    "--index": Flag("index", "paths"),
    "--name": Flag("name", "name"),
}
# key=value spellings: the flag without its dashes (ef=256, rescore=4, where=..., index=...).
KEYS = {name.lstrip("-"): name for name in FLAGS if name.startswith("--")}
NOT_PER_CONFIG = {"-k", "--limit", "k", "limit"}  # cutoffs are eval's own, the same for every config

DEFAULT = "dense"


@dataclass
class SearchConfig:
    """One column of an evaluation: a name, the indexes searched, and the options of that search."""

    name: str
    text: str  # the string it was read from
    paths: list[str] = field(default_factory=list)  # empty: eval's INDEX arguments
    search: SearchOptions = field(default_factory=SearchOptions)
    query: QueryOptions = field(default_factory=QueryOptions)

    def settings(self) -> dict:
        """What differs from a plain dense search, for reports (k is eval's, so left out)."""
        base, out = SearchOptions(), {}
        for f in dataclasses.fields(SearchOptions):
            if f.name != "k" and getattr(self.search, f.name) != getattr(base, f.name):
                out[f.name] = getattr(self.search, f.name)
        for name in ("prompt", "prompt_name", "model"):
            if (value := getattr(self.query, name)) is not None:
                out[f"query_{name}" if name != "model" else "model"] = value
        return out


def parse_config(text: str) -> SearchConfig:
    """The config a string describes (see the module's doc); a bad one is a UsageError naming it."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise UsageError(f"config {text!r}: {e}") from None
    config = SearchConfig(name=text.strip() or DEFAULT, text=text)
    search_fields = {f.name for f in dataclasses.fields(SearchOptions)}
    mode: str | None = None
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        flag_name, value = word, None
        if word.lower() in MODES:
            _use_mode(config, word.lower(), mode, text, search_fields)
            mode = word.lower()
            continue
        if word in KEYS and FLAGS[KEYS[word]].kind is bool:
            flag_name = KEYS[word]  # a switch by its bare name: exact
        elif not word.startswith("-") and "=" in word:
            key, value = word.split("=", 1)
            flag_name = KEYS.get(key, key)
            if key in NOT_PER_CONFIG:
                flag_name = "-k"
        elif word.startswith("--") and "=" in word:
            flag_name, value = word.split("=", 1)
        if flag_name in NOT_PER_CONFIG:
            raise UsageError(f"config {text!r}: the cutoffs are eval's -k/--at, the same for every config")
        flag = FLAGS.get(flag_name)
        if flag is None:
            raise UsageError(f"config {text!r}: unknown setting {word!r}", hint=f"known: {', '.join(known())}")
        if flag.target == "search" and flag.attr not in search_fields:
            raise UsageError(
                f"config {text!r}: {flag_name} is not available in this version of embcli",
                hint="compare the dense settings (ef, --rescore, --exact, --where) or other indexes",
            )
        if flag.kind is bool:
            if value is not None and value.lower() not in ("true", "1", "yes"):
                raise UsageError(f"config {text!r}: {flag_name} is a switch and takes no value")
            if flag.target == "mode":
                _use_mode(config, flag.attr, mode, text, search_fields)
                mode = flag.attr
            else:
                setattr(config.search, flag.attr, True)
            continue
        if value is None:
            if i >= len(words):
                raise UsageError(f"config {text!r}: {flag_name} needs a value")
            value = words[i]
            i += 1
        _set(config, flag, flag_name, value, text)
    return config


def known() -> list[str]:
    """The settings a config may name, for hints and help."""
    return [*MODES, *(name for name in FLAGS if name != "-m"), "KEY=VALUE"]


def _use_mode(config: SearchConfig, mode: str, before: str | None, text: str, search_fields: set[str]) -> None:
    if before is not None and before != mode:
        raise UsageError(f"config {text!r}: names two retrieval modes, {before} and {mode}")
    settings = MODES[mode]
    if any(name not in search_fields for name in settings):
        raise UsageError(
            f"config {text!r}: {mode} retrieval is not available in this version of embcli",
            hint="compare dense settings (ef, --rescore, --exact, --where) or other indexes",
        )
    for name, value in settings.items():
        setattr(config.search, name, value)


def _set(config: SearchConfig, flag: Flag, flag_name: str, value: str, text: str) -> None:
    converted: object = value
    if flag.kind in (int, float):
        try:
            converted = flag.kind(value)
        except ValueError:
            raise UsageError(f"config {text!r}: {flag_name} takes a number, got {value!r}") from None
        if flag.minimum is not None and converted < flag.minimum:
            raise UsageError(f"config {text!r}: {flag_name} must be at least {flag.minimum}, got {converted}")
    elif not value:
        raise UsageError(f"config {text!r}: {flag_name} needs a value")
    if flag.target == "index":
        config.paths.append(value)
    elif flag.target == "name":
        config.name = value
    elif flag.target == "query":
        setattr(config.query, flag.attr, converted)
    else:
        setattr(config.search, flag.attr, converted)
