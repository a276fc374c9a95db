"""Argument parsing shared by the magics: IPython's magic_arguments parsers fed shell words,
their argparse errors turned into UsageErrors that say what to do."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError


def split_words(line: str, magic: str) -> list[str]:
    """The words of a magic's line, as a shell splits them; UsageError if unbalanced."""
    try:
        return shlex.split(line)
    except ValueError as e:
        raise UsageError(f"{magic}: cannot parse the arguments ({e}); close the quote or "
                         "escape it with a backslash") from None


def split_command(words: list[str], magic: str) -> tuple[list[str], list[str]]:
    """(options, command): the words before and after `--`; UsageError if `--` ends the line."""
    if "--" not in words:
        return words, []
    at = words.index("--")
    if at == len(words) - 1:
        raise UsageError(f"{magic}: nothing after --")
    return words[:at], words[at + 1:]


def _glued(parser: Any, words: list[str]) -> list[str]:
    """`--opt VALUE` as `--opt=VALUE` (`-o VALUE` as `-oVALUE`): an option that takes a value
    takes the next word whatever it looks like, as getopt does (`--cflags -DX`, `-d -1`)."""
    takes = {s for a in parser._actions if a.option_strings and a.nargs is None
             for s in a.option_strings}
    out: list[str] = []
    it = iter(words)
    for word in it:
        if word in takes:
            value = next(it, None)
            if value is not None:
                word += ("=" if word.startswith("--") else "") + value
        out.append(word)
    return out


_MISSING = re.compile(r"argument (\S+?)(?:/\S+)?: expected one argument")
_UNKNOWN = re.compile(r"unrecognized arguments: (\S+)")


def parse(func: Callable[..., Any], words: list[str], magic: str) -> Any:
    """`words` parsed by `func`'s magic_arguments parser; UsageError naming `magic` if bad."""
    parser = func.parser  # type: ignore[attr-defined]
    try:
        return parser.parse_args(_glued(parser, words))
    except UsageError as e:
        text = str(e)
        usage = usage_of(func)
        missing, unknown = _MISSING.search(text), _UNKNOWN.search(text)
        if missing:
            option = missing.group(1)
            what = "a PATH" if _metavar(parser, option) == "PATH" else "a value"
            text = f"{magic} {option} needs {what}"
        elif unknown and not parser._actions:
            text = f"{magic} takes no arguments"
        elif unknown:
            word = unknown.group(1)
            text = (f"{magic}: unknown option {word}" if word.startswith("-") else
                    f"{magic}: unexpected argument {word!r}")
        else:
            text = f"{magic}: {text}"
        raise UsageError(f"{text}\n\n{usage}") from None


def _metavar(parser: Any, option: str) -> str | None:
    for action in parser._actions:
        if option in action.option_strings:
            return str(action.metavar)
    return None


def number(text: str, option: str, usage: str, low: float = 0.0, zero: bool = False,
           whole: bool = False) -> float:
    """`text` as a finite number above `low` (or equal with zero=True); UsageError if not."""
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (value == low and not zero):
        kind = "a whole number" if whole else "a number"
        bound = f">= {low:g}" if zero else f"> {low:g}"
        raise UsageError(f"{option} takes {kind} {bound}, not {text!r}\n{usage}")
    return value


def usage_of(func: Callable[..., Any]) -> str:
    """A magic_arguments function's usage line, arguments before options:
    `%bpf record NAME PATH [--every S]`."""
    parser = func.parser  # type: ignore[attr-defined]
    words = [f"%{parser.prog}"]
    for action in sorted(parser._actions, key=lambda a: bool(a.option_strings)):
        if not action.option_strings:
            meta = action.metavar or action.dest
            words.append({"?": f"[{meta}]", "*": f"[{meta} ...]"}.get(action.nargs, meta))
        elif action.nargs == 0:
            words.append(f"[{action.option_strings[0]}]")
        else:
            meta = action.metavar or ("{" + ",".join(action.choices) + "}" if action.choices
                                      else action.dest.upper())
            words.append(f"[{action.option_strings[-1]} {meta}]")
    return " ".join(words)
