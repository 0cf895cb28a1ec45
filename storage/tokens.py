"""Each trained model's own rare identifier token (DreamBooth's "[V]"), recorded in trained_models.subject_token.

One token for everyone ('sks') was enough while a picture held one member's LoRA; two members' LoRAs in one picture
need two different words, or both LoRAs answer to the same one. A token is four consonants ('vqzk', never h
or w): CLIP's BPE
splits such a string into rare sub-word pieces with no meaning of their own, which is what DreamBooth asks of an
identifier (Ruiz et al. 2022 §3.2: rare, short, weak prior). It is unique among the models in training or ready.
Models trained before keep their 'sks': the token is read from the model's row, never assumed.
"""

from __future__ import annotations

import secrets

from sqlmodel import Session, col, select

from storage.models import TrainedModel

LEGACY_TOKEN = "sks"
_CONSONANTS = "bcdfgjklmnpqrstvxz"  # no h, w: no 'http', 'www'
_LENGTH = 4  # 18**4 = 104,976 tokens
_ACRONYMS = frozenset({"lgbt", "mbps", "kbps", "gbps", "dvds", "nfts", "pdfs", "mmxx", "xxxl"})
ACTIVE_STATUSES = ("training", "ready")


def tokens_in_use(session: Session) -> set[str]:
    rows = session.exec(
        select(TrainedModel.subject_token).where(col(TrainedModel.status).in_(ACTIVE_STATUSES))
    )
    return set(rows)


def new_subject_token(taken: set[str]) -> str:
    """A random rare token that is not in ``taken`` (nor the legacy 'sks')."""
    for _ in range(1000):
        token = "".join(secrets.choice(_CONSONANTS) for _ in range(_LENGTH))
        if token not in taken and token != LEGACY_TOKEN and token not in _ACRONYMS:
            return token
    raise RuntimeError("no free subject token left")  # ~100,000 active models: make _LENGTH longer
