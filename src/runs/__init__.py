"""A training run's life, from the command to metrics.json: one room.

``training.py`` (one run: lock, signals, interruption records, the result), ``rundir.py`` (the run dir: lock,
resume, config-diff refusal, records), ``result.py`` (metrics.json, typed and versioned), ``guards.py`` (refusals
before anything is written, the Hydra callback), ``trainer.py`` / ``checkpoint_io.py`` / ``cost.py`` /
``preemption.py`` / ``logs.py`` (the Trainer and the callbacks a run adds to it), ``devices.py`` / ``ddp.py`` /
``launchers.py`` (processes and clusters), ``resolvers.py`` / ``environment.py`` (set-up), ``report.py`` (console
tables) and ``compat.py`` (every private Lightning / Hydra API used, in one place). Nothing is imported here, so
that ``src.runs.compat`` stays cheap to import from Hydra plugins.
"""
