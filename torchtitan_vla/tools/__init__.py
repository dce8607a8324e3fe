"""Tools that write small real artefacts: a tiny instance of every data format (``synthetic_data``) and an
untrained policy export (``debug_policy``), for trying the pipeline, the benchmarks and the tests.
Training and serving never import them; the toy world's generator, which the debug curriculum trains on,
lives with its world in ``torchtitan_vla.envs.toyworld``."""
