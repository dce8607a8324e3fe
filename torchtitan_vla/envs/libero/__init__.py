"""LIBERO (offline, through the ``libero`` extra): the environment with openpi's conventions (``env``), a
privileged scripted controller (``scripted``) and scripted demonstrations as a LeRobot dataset (``generate``).
Closed-loop evaluation is ``torchtitan_vla.eval.libero``; docs/libero.md has the conventions and recipes."""
