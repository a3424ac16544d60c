"""The run stage: one job per module.

- `clock`: the runner's idea of now (real time, or `--now` moving on with it);
- `pinned`: cadence versions by content hash, and the stored contact row;
- `render`: the message of one step run, built in full before anything is `sending`;
- `loop`: claim → decide → build → `sending` → last check → `send_many` → record.

The cron loop (`run_every`) is `engine.runner`.
"""
