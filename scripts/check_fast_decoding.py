"""Has a pi0-FAST policy learned its action tokens, and does decoding continue what training taught?

    python scripts/check_fast_decoding.py --policy outputs/RUN/export/policy --data outputs/data/toyworld/robot

On ``--samples`` random frames of a LeRobot dataset (the policy's cameras), each built exactly as training
builds it (prompt, ``"Action: "``, the chunk's FAST tokens, EOS), prints and writes as JSON:

* teacher-forced accuracy: the share of FAST tokens (and EOS) that are the argmax of the training forward,
  constrained to the FAST ids + EOS as decoding is, overall and for the first token (the chunk's lowest
  frequencies, which carry most of the motion);
* greedy agreement: how often greedy decoding from the inference prompt (ending at ``"Action: "``) gives the
  teacher-forced first token. It must be every time: a lower figure is a train/inference mismatch, not an
  untrained model;
* decoded streams that needed repair (no EOS within the cap, or not decodable as-is).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from torchtitan_vla.data.lerobot import LeRobotReader  # noqa: E402
from torchtitan_vla.data.robot import RobotSampleBuilder  # noqa: E402
from torchtitan_vla.data.sample import Sample  # noqa: E402
from torchtitan_vla.models.vla.fast_decoding import decode_fast_actions  # noqa: E402
from torchtitan_vla.processing.chat import IGNORE_INDEX  # noqa: E402
from torchtitan_vla.serve.policy import Policy  # noqa: E402


def sample_builder(policy: Policy, reader: LeRobotReader) -> RobotSampleBuilder:
    """Training's sample builder for ``reader`` with the policy's prompt settings, FAST tokenizer and
    normalisation statistics (the export's, which training used: not recomputed from ``reader``)."""
    cfg, expert = policy.cfg, policy.cfg.action_expert
    builder = RobotSampleBuilder(reader, policy.prompts, action_horizon=expert.action_horizon,
                                 max_action_dim=expert.max_action_dim, max_state_dim=expert.max_state_dim,
                                 normalization="none", image_size=cfg.data.image_size, state_mode=expert.state_mode,
                                 state_bins=expert.state_bins, transform=policy.transform, fast=policy.fast)
    builder.state_norm, builder.action_norm = policy.state_norm, policy.action_norm
    return builder


def inference_form(sample: Sample) -> Sample:
    """A training sample cut after its ``"Action: "``: the prompt serving builds (``open_fast_segment``)."""
    cut = int((sample.labels != IGNORE_INDEX).nonzero()[0]) + 1  # "Action: "'s last token predicts the first
    return dataclasses.replace(sample, input_ids=sample.input_ids[:cut],
                               labels=torch.full((cut,), IGNORE_INDEX, dtype=torch.long),
                               position_ids=sample.position_ids[:, :cut], doc_ids=sample.doc_ids[:cut],
                               fast_mask=sample.fast_mask[:cut])


@torch.no_grad()
def constrained_argmax(policy: Policy, batch, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, target) ids at the labelled FAST positions of a training-form batch."""
    model = policy.model
    o = model.observe(batch)
    hidden = model.vlm.run_layers(o.h, o.cos, o.sin, o.mask, o.visual_mask, o.deepstack)
    at = (batch.labels != IGNORE_INDEX) & batch.fast_mask.bool()
    logits = model.vlm.lm_head(hidden[at]).float()
    return allowed[logits[:, allowed].argmax(-1)], batch.labels[at]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="exported pi0-FAST policy folder")
    parser.add_argument("--data", required=True, help="LeRobot dataset folder the policy was trained on")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    policy = Policy.from_export(args.policy)
    if policy.fast is None:
        parser.error(f"{args.policy} has no FAST tokenizer: it was not trained with FAST action tokens")
    reader = LeRobotReader(args.data, camera_keys=policy.camera_keys)
    eos = policy.tokenizer.eos_id
    allowed = torch.cat([policy.fast.vocab.token_ids, torch.tensor([eos])])
    builder = sample_builder(policy, reader)
    rng = np.random.default_rng(args.seed)
    correct = total = first_correct = greedy_agrees = repaired = 0
    for _ in range(args.samples):
        episode = int(rng.integers(len(reader.episodes)))
        sample = builder.build(episode, int(rng.integers(reader.episodes[episode].length)), 0, rng)
        predicted, target = constrained_argmax(policy, policy.collate([sample]).to(policy.device), allowed)
        correct += int((predicted == target).sum())
        total += len(target)
        first_correct += int(predicted[0] == target[0])
        decoded = decode_fast_actions(policy.model, policy._collate([inference_form(sample)]), policy.fast, eos)
        repaired += decoded.ok.count(False)
        greedy_agrees += int(decoded.streams[0][:1] == predicted[:1].tolist())
    report = {
        "policy": args.policy, "data": args.data, "samples": args.samples, "seed": args.seed,
        "teacher_forced_accuracy": correct / total, "first_token_accuracy": first_correct / args.samples,
        "greedy_agrees_with_teacher_forced": greedy_agrees / args.samples, "repaired": repaired,
    }
    print(json.dumps(report, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
