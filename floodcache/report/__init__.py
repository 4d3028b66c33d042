"""The `report` command: its config (`config`), report.md made from an evaluation (`report`),
the material its sections read (`material`), the sections (`sections`, and `failures` for
the failure analysis), the figures (`figures`) and markdown helpers (`markdown`).

Above `evaluate`; nothing but `pipeline` and the command line imports it."""
