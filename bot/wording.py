"""Member text, two ways: folded for matching against a server's blocked words, and neutralised for echoing.

Matching folds what makes two strings look alike to a reader but differ to ``in``: compatibility forms (NFKC:
fullwidth and mathematical letters), accents, invisible format characters (zero-width spaces and joiners, soft
hyphens, bidi marks) and cross-script look-alikes (Unicode's confusables table, from
``confusable-homoglyphs``: Cyrillic ``а`` is Latin ``a``). A blocked word then matches on word boundaries,
its letters possibly split by punctuation or spaces (``a-s-s``, ``a.s.s``), so ``class`` is not blocked by
``ass``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import discord
from confusable_homoglyphs.confusables import confusables_data

_DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me"})  # format characters, combining marks (accents)
_CONTROL_OR_FORMAT = frozenset({"Cc", "Cf", "Co", "Cs"})
_SEPARATORS = r"[\W_]*"  # between two letters of a blocked word: punctuation, spaces, underscores, nothing


@lru_cache(maxsize=4096)
def _latin_look_alike(char: str) -> str:
    """The ASCII letter or digit a non-ASCII character is confusable with, or the character itself."""
    if char.isascii():
        return char
    for glyph in confusables_data.get(char, ()):
        candidate = glyph["c"]
        if len(candidate) == 1 and candidate.isascii() and candidate.isalnum():
            return candidate.lower()
    return char


def fold(text: str) -> str:
    """The form blocked words are matched in (for matching only: never shown)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    kept = "".join(c for c in decomposed if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return unicodedata.normalize("NFKC", "".join(_latin_look_alike(c) for c in kept.casefold()))


@lru_cache(maxsize=1024)
def _word_pattern(word: str) -> re.Pattern[str] | None:
    letters = [c for c in fold(word) if c.isalnum()]
    if not letters:
        return None
    body = _SEPARATORS.join(re.escape(c) for c in letters)
    # Word boundaries where the word starts/ends with a letter of a script that has words (cased) or a digit;
    # scripts written without spaces (CJK) match anywhere.
    head = r"(?<![^\W_])" if _bounded(letters[0]) else ""
    tail = r"(?![^\W_])" if _bounded(letters[-1]) else ""
    return re.compile(head + body + tail)


def _bounded(char: str) -> bool:
    return char.isdigit() or char.lower() != char.upper()


def find_word(text: str, words: tuple[str, ...]) -> str | None:
    """The first of ``words`` that ``text`` contains as a word, after folding both."""
    folded = fold(text)
    for word in words:
        pattern = _word_pattern(word) if word else None
        if pattern is not None and pattern.search(folded):
            return word
    return None


def neutralise(text: str, limit: int) -> str:
    """Member text to echo inside a message or embed: control and format characters (zero-width, bidi
    overrides) removed, line breaks kept as spaces, markdown and mentions escaped, at most ``limit`` characters
    (escapes included: a message must stay inside Discord's limits)."""
    flat = "".join(
        " " if c in "\r\n\t" else c
        for c in text
        if c in "\r\n\t" or unicodedata.category(c) not in _CONTROL_OR_FORMAT
    )
    flat = re.sub(r" {2,}", " ", flat).strip()
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(flat))
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:  # never end on half an escape
        cut = cut[:-1]
    return cut + "…"
