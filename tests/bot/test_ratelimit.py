"""The per-member rate limit (bot/ratelimit.py): a sliding window, and memory that follows the active members.
The Discord side (commands and result buttons share one budget) is in test_imagine.py."""

from __future__ import annotations

from bot.ratelimit import RateLimiter


def test_the_window_slides_instead_of_resetting() -> None:
    limiter = RateLimiter(3, window_s=60)
    assert [limiter.hit(1, now=t) for t in (0, 10, 20)] == [0, 0, 0]
    assert limiter.hit(1, now=30) == 30  # until the hit at 0 leaves the window
    assert limiter.hit(1, now=60) == 0
    # A window that reset at 60 (discord.py's Cooldown) would allow 3 more now; the hits at 10 and 20 still count.
    assert limiter.hit(1, now=61) == 9
    assert limiter.hit(2, now=61) == 0  # another member has their own budget


def test_idle_members_are_forgotten_and_active_ones_kept() -> None:
    limiter = RateLimiter(3, window_s=60)
    for user_id in range(1000):
        limiter.hit(user_id, now=0)
    for t in (50, 51, 52):
        limiter.hit(5000, now=t)
    assert len(limiter) == 1001
    # One window on, the next hit sweeps: the 1000 idle members go, the member who is at the limit stays.
    assert limiter.hit(5000, now=61) > 0
    assert len(limiter) == 1
    assert limiter.hit(7, now=62) == 0 and len(limiter) == 2
