"""Simulated environments: the generated toy world the debug curriculum trains and evaluates on, and
Meta-World v3 (scripted demonstrations; its closed-loop evaluation is ``torchtitan_vla.eval.metaworld``)."""
