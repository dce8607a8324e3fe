"""Offscreen MuJoCo rendering speed (frames/s), the evaluators' per-step cost besides the policy.

    MUJOCO_GL=egl python scripts/bench_render.py --output render.json        # GPU machine
    MUJOCO_GL=osmesa python scripts/bench_render.py --frames 5 --sizes 64    # CPU

Two scenes per image size: a Meta-World v3 task through the evaluator's own ``TaskEnv`` (render only, and
step + render as in a closed-loop episode; skipped with the reason when ``metaworld`` is missing) and a
plain MuJoCo scene (textured floor, lights, 30 bodies) through ``mujoco.Renderer``, which needs nothing
but ``mujoco``. The backend (``MUJOCO_GL``) is read before ``mujoco`` is imported, hence the environment
variable rather than an option.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

BODIES = "".join(
    f'<body pos="{(i % 6) * 0.3 - 0.75:.2f} {(i // 6) * 0.3 - 0.6:.2f} 0.2"><freejoint/>'
    f'<geom type="{("box", "sphere", "capsule")[i % 3]}" size="0.06 0.06 0.06" rgba="{i / 30:.2f} 0.4 0.7 1"/></body>'
    for i in range(30)
)
SCENE = f"""<mujoco>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1=".2 .3 .4" rgb2=".8 .8 .8" width="256" height="256"/>
    <material name="grid" texture="grid" texrepeat="4 4"/>
  </asset>
  <worldbody>
    <light pos="0 0 3" dir="0 0 -1" castshadow="true"/>
    <light pos="1 1 2" dir="-1 -1 -1"/>
    <geom type="plane" size="2 2 0.1" material="grid"/>
    <camera name="view" pos="0 -2.2 1.6" xyaxes="1 0 0 0 0.6 0.8"/>
    {BODIES}
  </worldbody>
</mujoco>"""


def frames_per_s(render, frames: int, warmup: int) -> float:
    for _ in range(warmup):
        render()
    start = time.perf_counter()
    for _ in range(frames):
        render()
    return frames / (time.perf_counter() - start)


def plain_scene(size: int, frames: int, warmup: int) -> dict:
    import mujoco

    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, height=size, width=size)

    def render():
        mujoco.mj_step(model, data)
        renderer.update_scene(data, camera="view")
        return renderer.render()

    try:
        return {"scene": "mujoco_plain", "size": size, "step_render_fps": frames_per_s(render, frames, warmup)}
    finally:
        renderer.close()


def metaworld_scene(size: int, frames: int, warmup: int, task: str) -> dict:
    from torchtitan_vla.eval.metaworld import TaskEnv

    env = TaskEnv(task, seed=0, image_size=size)
    try:
        env.reset(0)
        action = np.zeros(env.env.action_space.shape, np.float32)
        render_only = frames_per_s(env.render, frames, warmup)
        step_render = frames_per_s(lambda: (env.step(action), env.render()), frames, warmup)
        return {"scene": f"metaworld_{task}", "size": size, "render_fps": render_only, "step_render_fps": step_render}
    finally:
        env.close()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 480], help="square image sides")
    parser.add_argument("--frames", type=int, default=200, help="timed frames per scene and size")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--task", default="pick-place-v3", help="Meta-World task of the evaluator scene")
    parser.add_argument("--output", default="outputs/bench_render.json")
    args = parser.parse_args(argv)
    report = {"mujoco_gl": os.environ.get("MUJOCO_GL", ""), "frames": args.frames, "results": [], "skipped": []}
    for size in args.sizes:
        report["results"].append(plain_scene(size, args.frames, args.warmup))
        try:
            report["results"].append(metaworld_scene(size, args.frames, args.warmup, args.task))
        except ImportError as exc:
            report["skipped"].append(f"metaworld at {size}px: {exc}")
    import mujoco

    report["mujoco"] = mujoco.__version__
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
