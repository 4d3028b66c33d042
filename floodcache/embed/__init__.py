"""The `embed` command: its config (`config`), the plan of views (`plan`), the run
(`run.run_embed`) and its heart (`encode`), reader processes with their shared memory slots
(`readers`, `slots`, `shared_memory`, `background`), writer processes and the assembler
(`part_writer`), torchrun groups (`floodcache.runtime`) and its clocks (`clocks`).

Above `data`, `sam` and `cache`; no other stage imports it but `bench` and `pipeline`."""
