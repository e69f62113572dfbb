"""``coalmine rollout report``: one rollout as a picture (a self-contained HTML page or a PNG).

- `model`: what the report shows, as plain dataclasses (`RolloutTimeline`);
- `timeline`: the workflow history → `RolloutTimeline`, a pure function (tested on recorded
  histories), reading every shape the history has had (one activity per check, or
  ``analyse_step``);
- `verdict`: the decisive data point behind a rollback; `facts`: the words both pages share;
- `series`: the canary beside the primary, Prometheus range queries of the builtin metrics;
- `charts`, `png`, `html`: drawing (matplotlib, Agg) and the two outputs;
- `build`: fetching from Temporal and Prometheus and writing the file (the command's body).
"""
