"""LIBERO closed-loop evaluation under openpi's protocol: simulator workers, batched policy calls, resumable
results with their provenance, diagnostics (``python -m torchtitan_vla.eval.libero``; docs/libero_evaluation.md).
The environment itself is ``torchtitan_vla.envs.libero``."""
