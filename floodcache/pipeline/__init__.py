"""The `run` command: every stage in order, audit -> embed -> train -> evaluate -> report, each
with its own config nested in `config.PipelineConfig`, skipping what is complete (`run`).

The top of floodcache with `bench`: it imports every stage, none imports it."""
