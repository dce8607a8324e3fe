"""Evaluation: closed-loop success in simulators (``closed_loop``: the toy world; ``metaworld``)."""
