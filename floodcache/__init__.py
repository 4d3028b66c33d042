"""floodcache: adapt SAM to flood-water segmentation from a cache of image embeddings."""

import os

# albumentations asks PyPI for a newer version of itself on every import: up to 2 s and a
# warning on a machine without internet, as flood-mapping machines in the field often are.
# floodcache reaches the network in `download` alone. A user's own setting is kept.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
