"""Write docs/api.md, the Python API reference, from the docstrings of ``pianomtl``'s public names.

    python scripts/make_api_docs.py           # rewrite docs/api.md
    python scripts/make_api_docs.py --check   # exit 1 if docs/api.md is not what the docstrings say

Why generated: the reference and the code cannot drift apart; ``tests/test_api.py`` runs
``--check``, so a changed signature or docstring without a regenerated page fails the tests.
The page lists each name of ``pianomtl.__all__`` with its signature and docstring, the
public methods and properties of each class, and the decoder options table from
:meth:`pianomtl.DecoderParams.limits`. Plain markdown, readable on GitHub; no docs toolchain.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "api.md"

ORDER = ("transcribe", "Transcriber", "Transcription", "Note", "PedalEvent", "DecoderParams", "Stream", "StreamEvent")
"""The reading order of the page (names of ``__all__`` not listed here follow)."""

SKIP_MEMBERS = {"count", "index"}  # tuple methods of the NamedTuples


def _text(doc: str | None) -> str:
    """A docstring as markdown: reST roles and double backticks become code spans, doctests code blocks."""
    text = inspect.cleandoc(doc or "")
    text = re.sub(r":(?:func|class|meth|mod|data|attr|exc):`~?([^`<]+?)(?:\s*<[^>]+>)?`", r"`\1`", text)
    text = text.replace("``", "`")
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        if not in_code and line.lstrip().startswith(">>>"):  # a doctest runs until the next blank line
            out.append("```python")
            in_code = True
        elif in_code and not line.strip():
            out.append("```")
            in_code = False
        out.append(line.strip() if in_code else line)
    if in_code:
        out.append("```")
    return "\n".join(_code_blocks(out))


def _code_blocks(lines: list[str]) -> list[str]:
    """reST ``::`` literal blocks (an indented block after a line ending in ``::``) as fenced code."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.lstrip().startswith(">>>"):
            stripped = line.rstrip()[:-1]
            if stripped.strip() and stripped.strip() != ":":
                out.append(stripped)
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out += ["", "```", *block, "```", ""]
            continue
        out.append(line)
        i += 1
    return out


def _signature(name: str, value: object, multiline: bool = False) -> str:
    """``name(a: int = 1, *, b: str | None = None) -> X`` with annotations as written (not quoted)."""
    try:
        signature = inspect.signature(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name
    parts = []
    star_done = False
    for index, parameter in enumerate(signature.parameters.values()):
        if index == 0 and parameter.name in ("self", "cls"):
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if parameter.kind is parameter.VAR_POSITIONAL:
            star_done = True
        prefix = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        text = prefix + parameter.name
        if parameter.annotation is not parameter.empty:
            annotation = getattr(parameter.annotation, "__forward_arg__", parameter.annotation)  # NamedTuple fields
            text += f": {annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)}"
        if parameter.default is not parameter.empty:
            text += f" = {parameter.default!r}" if not callable(parameter.default) else " = ..."
        parts.append(text)
    returns = signature.return_annotation
    tail = "" if returns is signature.empty or returns in ("None", None) else f" -> {returns}"
    one_line = f"{name}({', '.join(parts)}){tail}"
    if not multiline or len(one_line) <= 100:
        return one_line
    body = "".join(f"    {part},\n" for part in parts)
    return f"{name}(\n{body}){tail}"


def _members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties defined by ``cls`` itself (not inherited), in source order."""
    members = []
    for member, value in vars(cls).items():
        if member.startswith("_") or member in SKIP_MEMBERS:
            continue
        if isinstance(value, property | classmethod | staticmethod) or inspect.isfunction(value):
            members.append((member, value))
    return members


def _decoder_table() -> list[str]:
    from pianomtl import DecoderParams

    lines = ["| option | default | range | what it does |", "|---|---|---|---|"]
    defaults = {f.name: f.default for f in dataclasses.fields(DecoderParams)}
    for name, limit in DecoderParams.limits().items():
        cells = [f"`{name}`", f"`{defaults[name]!r}`", limit.describe(), limit.help]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def render() -> str:
    import pianomtl

    names = [n for n in ORDER if n in pianomtl.__all__]
    names += [n for n in pianomtl.__all__ if n not in names and not n.startswith("_")]
    out = [
        "# Python API",
        "",
        "<!-- generated by scripts/make_api_docs.py from the docstrings; do not edit by hand -->",
        "",
        _text(pianomtl.__doc__),
        "",
        "Contents: " + ", ".join(f"[`{n}`](#{n.lower()})" for n in names) + ".",
        "",
    ]
    for name in names:
        value = getattr(pianomtl, name)
        out += [f"## {name}", ""]
        if inspect.isclass(value) or inspect.isfunction(value):
            kind = "class" if inspect.isclass(value) else "def"
            heading = f"{kind} {_signature(name, value, multiline=True)}"
            out += ["```python", heading, "```", "", _text(value.__doc__), ""]
        else:
            out += [f"`{name}`: a {type(value).__name__}", ""]
            if name == "FORMATS":
                out += ["| name | media type | what it writes |", "|---|---|---|"]
                out += [f"| `{f.name}` | `{f.media_type}` | {f.description} |" for f in value.values()]
                out += ["", "Add one: see `pianomtl.transcription.formats` (one decorated function).", ""]
            continue
        if name == "DecoderParams":
            out += ["### Options", "", *_decoder_table(), ""]
        if inspect.isclass(value):
            for member, attribute in _members(value):
                target = attribute.fget if isinstance(attribute, property) else attribute
                target = getattr(target, "__func__", target)
                label = member if isinstance(attribute, property) else _signature(member, target)
                if isinstance(attribute, property):
                    out += [f"### `{name}.{label}` (property)", ""]
                else:
                    out += [f"### `{name}.{label}`", ""]
                out += [_text(target.__doc__) or "(undocumented)", ""]
    text = "\n".join(out)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/api.md instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run python scripts/make_api_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
