"""The data: image/mask pairs found and read (`pairs`), audited for every problem (`audit`),
split and augmented into views (`views`), fetched from the internet (`download`), or
generated for tests and benchmarks (`synthetic`); georeferenced rasters read window by
window, their bands scaled to 8 bits (`raster`).

With `sam`, the bottom of floodcache: it imports only `sam`'s preprocessing and checkpoint
registry."""
