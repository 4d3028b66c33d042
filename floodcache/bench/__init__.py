"""`bench`: floodcache measured against the reference workflow that reruns SAM's encoder at
every step, on the same views: its config (`config`), the run (`run`), the table and its
timing helpers (`table`), and one module per kind of stage (`encoders`, `embed`, `predict`,
`train`, `io`).

The top of floodcache with `pipeline`: no stage imports it."""
