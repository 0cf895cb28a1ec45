"""The likeness line in plain words: a picture the safety check kept back gets no words (the member never sees it),
and the others keep their picture numbers."""

from __future__ import annotations

from bot.services.likeness import words

SCORES = [
    {"verdict": "strong", "score": 0.78, "tries": 2},
    {"verdict": "fair", "score": 0.5, "tries": 1},
    {"verdict": "strong", "score": 0.74, "tries": 3},
]


def test_every_posted_picture_has_words_and_a_blocked_one_none() -> None:
    assert words(SCORES) == (
        "Looks like you: 1: strong (0.78) · 2: fair (0.50) · 3: strong (0.74) — re-rendered 3× "
        "automatically to get closer, at no charge"
    )
    shown = words(SCORES, [0, 1])  # picture 3 was blocked
    assert shown == (
        "Looks like you: 1: strong (0.78) · 2: fair (0.50) — re-rendered 1× automatically to get "
        "closer, at no charge"
    )
    assert words(SCORES, [1]) == "Looks like you: 2: fair (0.50)"
    assert words(SCORES, []) == "" and words([]) == ""
