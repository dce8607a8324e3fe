"""The training loop and everything around it: optimizer and schedules, checkpoints, metrics,
curriculum, EMA, export and preemption handling. ``main.run`` is the entry point used by train.py."""
