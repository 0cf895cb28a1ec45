"""Prior-preservation class images, shared by every member through the blob store.

They are made by the base model from a class prompt ('a photo of woman'), so they are nobody's data and the same
for every order with the same base model, class word and recipe: the first training renders them, uploads them
under ``shared/class-images/{digest}/{class}/``, and every later training on any agent downloads them instead of
rendering (``class_images_rendered: 0`` in its meta.json). Image i is rendered from seed + i, so a larger
``num_class_images`` reuses the smaller set and renders only the rest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cloud.messages import TrainJob
from cloud.recipes import class_images_digest
from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore

log = logging.getLogger(__name__)


class ClassImageSync:
    def __init__(self, blobs: BlobStore, job: TrainJob, folder: Path) -> None:
        self.blobs = blobs
        self.folder = folder
        digest = class_images_digest(job)
        self._key = lambda n: keys.class_image_key(digest, job.class_word, n)
        self.count = job.params.num_class_images
        self.downloaded: set[str] = set()

    def download(self) -> int:
        """Fetch the stored ones into the folder (names as the trainer expects: 00000.png …); how many."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for n in range(self.count):
            name = f"{n:05d}.png"
            try:
                data = self.blobs.get(self._key(n))
            except BlobNotFound:
                continue
            (self.folder / name).write_bytes(data)
            self.downloaded.add(name)
        return len(self.downloaded)

    def upload_new(self) -> int:
        """Store the ones this run rendered, for every later order; how many."""
        uploaded = 0
        for n in range(self.count):
            path = self.folder / f"{n:05d}.png"
            if path.name in self.downloaded or not path.is_file():
                continue
            self.blobs.put(self._key(n), path.read_bytes(), content_type="image/png")
            uploaded += 1
        if uploaded:
            log.info("stored %d new class images under %s", uploaded, self._key(0).rsplit("/", 1)[0])
        return uploaded
