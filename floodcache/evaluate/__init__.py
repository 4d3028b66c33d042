"""The `evaluate` command: its config (`config`), the evaluation of every model, prompt and
view (`evaluate`), the per-view metrics (`metrics`) and the evaluation folder (`table`).

Above `train` (it reads run folders), `cache` and `sam`; `report` reads its tables."""
