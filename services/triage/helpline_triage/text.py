"""Text normalisation for the rules: views of a description that patterns match against.

A `View` is the description lower-cased with accents and invisible characters removed
(Unicode NFKD, combining marks and format characters such as zero-width spaces dropped) and
typographic quotes and dashes made plain; the "decoded" view also reads letter-for-digit
spellings (`k1ll`, `h8`, `$u1c1de`, `r@cist`) and spaced-out words (`k i l l`, `k.y.s`) as
words. Every character of a view remembers where it came from, so a
match is reported as the text as it appears in the original description (the evidence).
Pure functions: the same text always gives the same views.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# Symbols read as letters inside a word that also has letters ("k1ll", "h8", "$lut").
_LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "ate",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
    "+": "t",
}
_PLAIN = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201b": "'",
    "\u02bc": "'",
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u00a0": " ",
}
# A run of letters, digits and leet symbols; rewritten only when it mixes letters and symbols.
_TOKEN = re.compile(r"[a-z0-9@$!|+]+")
# Letters and digits that read as a number, not leet: "y10", "year7", "ks3", "10pm", "1st".
_NUMBERISH = re.compile(
    r"(?:y|yr|year|ks|p|s|form|grade|class|room|age|aged|u|under|no|nr|x)\d{1,2}"
    r"|\d{1,4}(?:st|nd|rd|th|am|pm|s|k|m|yo|yrs?|ft|cm|mm|kg|gb|mb|p|h|hr|hrs|min|mins)?"
)
# Three or more single letters (or leet symbols) separated by one space, dot, dash or star:
# "k i l l", "k 1 l l".
_SPACED = re.compile(r"(?<![a-z0-9])(?:[a-z0-9@$!][ .\-*_]){2,}[a-z0-9@$!](?![a-z0-9])")
# A quote that is not an apostrophe inside a word ("don't" keeps its own).
_QUOTE = re.compile(r"\"|(?<![a-z])'|'(?![a-z])")
Replacer = Callable[[str, int], list[tuple[str, int]]]


@dataclass(frozen=True)
class View:
    """A normalised text and, for each of its characters, the index in the original."""

    text: str
    origin: tuple[int, ...]

    def original_span(self, start: int, end: int, original: str) -> str:
        """The original text behind view[start:end] (whole original characters)."""
        if start >= end:
            return ""
        return original[self.origin[start] : self.origin[end - 1] + 1]


def _plain(text: str) -> View:
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        for part in unicodedata.normalize("NFKD", _PLAIN.get(ch, ch)):
            if unicodedata.combining(part) or unicodedata.category(part) == "Cf":
                continue  # accents; invisible format characters ("k\u200bys", bidi marks)
            for low in part.lower():
                chars.append(low)
                origin.append(i)
    return View("".join(chars), tuple(origin))


def _rewrite(view: View, pattern: re.Pattern[str], replace: Replacer) -> View:
    chars: list[str] = []
    origin: list[int] = []
    pos = 0
    for m in pattern.finditer(view.text):
        chars.extend(view.text[pos : m.start()])
        origin.extend(view.origin[pos : m.start()])
        for new, src in replace(m.group(), m.start()):
            chars.append(new)
            origin.append(view.origin[src])
        pos = m.end()
    chars.extend(view.text[pos:])
    origin.extend(view.origin[pos:])
    return View("".join(chars), tuple(origin))


def _keep(token: str, start: int) -> list[tuple[str, int]]:
    return [(c, start + i) for i, c in enumerate(token)]


def _unleet(token: str, start: int) -> list[tuple[str, int]]:
    """`k1ll` -> `kill`; left alone unless letters mix with symbols ("kys!" and "y10" stay)."""
    core = token.rstrip("!")
    if (
        not any(c.isalpha() for c in core)
        or not any(c in _LEET for c in core)
        or _NUMBERISH.fullmatch(core)
    ):
        return _keep(token, start)
    out = [(r, start + i) for i, c in enumerate(core) for r in _LEET.get(c, c)]
    return out + _keep(token[len(core) :], start + len(core))


def _unspace(token: str, start: int) -> list[tuple[str, int]]:
    """`k i l l` -> `kill`; spaced digits alone ("1 2 3") stay as they are."""
    kept = [(c, start + i) for i, c in enumerate(token) if c not in " .-*_"]
    return kept if any(c.isalpha() for c, _ in kept) else _keep(token, start)


def _blank(token: str, start: int) -> list[tuple[str, int]]:
    return [(" ", start + i) for i in range(len(token))]


def views(text: str) -> tuple[View, ...]:
    """The plain view and, when it differs, the decoded view of `text`."""
    plain = _rewrite(_plain(text), _QUOTE, _blank)
    decoded = _rewrite(_rewrite(plain, _SPACED, _unspace), _TOKEN, _unleet)
    return (plain,) if decoded.text == plain.text else (plain, decoded)
