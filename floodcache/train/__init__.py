"""The `train` command: its config (`config`), the epochs and the resumable state (`run`), the
decoder's step and loss (`trainer`), the batches of cached views and their prompts
(`batches`), and the run folder it writes and others read (`runs`).

Above `cache`, `sam` and `prompts`; `evaluate`, `predict` and `export` read its run folders."""
