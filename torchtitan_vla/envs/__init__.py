"""Simulated environments: the generated toy world the debug curriculum trains and evaluates on,
Meta-World v3 (scripted demonstrations; its closed-loop evaluation is ``torchtitan_vla.eval.metaworld``) and
LIBERO (``envs.libero``: offline environment, scripted controller and demonstrations; evaluation in
``torchtitan_vla.eval.libero``)."""
