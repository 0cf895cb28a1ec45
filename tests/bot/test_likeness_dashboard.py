"""Likeness on the admin dashboard: the distribution of stored scores per server and per model (real SQLite store,
the page rendered from the same figures), and the plain words a result post uses."""

from __future__ import annotations

import time
from pathlib import Path

from bot.dashboard.data import dashboard_data
from bot.dashboard.page import render_page
from bot.services.likeness import words
from storage import migrate, open_engine, order_store, transaction

SCORES = {  # (server, model) → stored pictures (verdict, score)
    ("111", "alpha"): [("strong", 0.71), ("strong", 0.66), ("fair", 0.48), ("weak", 0.31)],
    ("111", "beta"): [("copy", 0.97)],
    ("222", "gamma"): [("weak", 0.2), ("no_face", None)],
}


def test_distribution_per_server_and_per_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    engine = open_engine(url)
    try:
        with transaction(engine) as s:
            for (guild, name), pictures in SCORES.items():
                model = order_store.add_model(
                    s, user_id=5, name=name, class_word="man", subject_token="sks", base_model="tiny-sd"
                )
                order = order_store.create_order(
                    s, user_id=5, kind="render", guild_id=guild, model_id=model.id
                )
                for n, (verdict, score) in enumerate(pictures):
                    order_store.add_image(
                        s,
                        order.id,
                        order_store.NewImage(
                            blob_key=f"users/5/renders/{order.id}/{n}.png",
                            index=n,
                            likeness_verdict=verdict,
                            likeness_score=score,
                            likeness_tries=1,
                        ),
                    )
                order_store.add_image(
                    s, order.id, order_store.NewImage(blob_key="unscored", index=9)
                )  # not counted
        data = dashboard_data(engine, window_s=3600, now=time.time() + 1)
    finally:
        engine.dispose()
    servers = {d["key"]: d for d in data["likeness"]["servers"]}
    assert servers["111"]["verdicts"] == {"strong": 2, "fair": 1, "weak": 1, "copy": 1}
    assert servers["111"]["total"] == 5 and servers["111"]["quartiles"] == (0.48, 0.66, 0.71)
    assert servers["222"]["verdicts"] == {"weak": 1, "no_face": 1} and servers["222"]["quartiles"] == (
        0.2,
        0.2,
        0.2,
    )
    models = {d["label"]: d for d in data["likeness"]["models"]}
    assert set(models) == {"alpha", "beta", "gamma"}
    assert models["alpha"]["verdicts"] == {"strong": 2, "fair": 1, "weak": 1}
    assert models["alpha"]["quartiles"] == (0.48, 0.66, 0.71)
    page = render_page(data)
    assert "Likeness per server" in page and "Likeness per model" in page
    assert "alpha (median 0.66)" in page and "no face" in page


def test_plain_words() -> None:
    assert words([{"verdict": "fair", "score": 0.42, "tries": 1}]) == "Looks like you: fair (0.42)"
    assert words(
        [{"verdict": "strong", "score": 0.7, "tries": 2}, {"verdict": "no_face", "score": None, "tries": 3}]
    ) == (
        "Looks like you: 1: strong (0.70) · 2: no face found — re-rendered 3× automatically to get closer, "
        "at no charge"
    )
    assert words([]) == ""
