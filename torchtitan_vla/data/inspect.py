"""Batch inspector: one self-contained HTML page of exactly what the model receives from each source.

    python -m torchtitan_vla.data.inspect --config X.toml [--stage NAME] [--n 8] [--out FILE.html] [--seed S]

For ``--n`` samples of every source in the stage's mixture (built by the training pipeline's own
builders, augmentation included when ``data.augment`` is on): each camera as the vision tower gets it
(decoded, resized/padded, augmented, patchified, here turned back into a picture), the prompt token by
token with the text-loss targets in green, the state and action chunk per dimension before and after
normalisation (padded dimensions and ``action_is_pad`` steps grey), and the attention mask of one sample
built by the model's own mask functions. Upside-down or swapped cameras, wrong task text and broken
normalisation show at a glance.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import sys

import numpy as np
import torch

from ..config import ConfigError, load_stages
from ..models.action_expert.masks import suffix_blocks, suffix_mask
from ..models.qwen3_vl.masks import build_mask
from ..processing.chat import IGNORE_INDEX
from .inspect_draw import PAGE_STYLE, chunk_plot, mask_picture, png_tag, state_plot, token_html, unpatchify
from .loader import _robot_builder, _web_stream
from .prompts import PromptBuilder
from .sample import Collator, Sample


def _tokens(sample: Sample, tokenizer, image_token_id: int) -> tuple[list[str], list[bool]]:
    """Token texts (a run of image tokens collapsed to one ``<image xN>``) and whether each is a loss target
    (labels are shifted: the label at i - 1 is the target for token i)."""
    ids = sample.input_ids.tolist()
    labels = sample.labels.tolist()
    texts, in_loss, i = [], [], 0
    while i < len(ids):
        target = i > 0 and labels[i - 1] != IGNORE_INDEX
        if ids[i] == image_token_id:
            j = i
            while j < len(ids) and ids[j] == image_token_id:
                j += 1
            texts.append(f"<image x{j - i}>")
            in_loss.append(target)
            i = j
            continue
        texts.append(tokenizer.decode([ids[i]]))
        in_loss.append(target)
        i += 1
    return texts, in_loss


def _cameras(sample: Sample, names: list[str]) -> str:
    tags = []
    for k, (pixels, grid) in enumerate(zip(sample.pixel_values, sample.image_grid_thw)):
        name = names[k] if k < len(names) else f"image {k}"
        tags.append(f'<figure style="display:inline-block">{png_tag(unpatchify(pixels, grid), "cam", name)}'
                    f"<figcaption>{html.escape(name)} {int(grid[1]) * 16}x{int(grid[2]) * 16}</figcaption></figure>")
    return "".join(tags)


def _robot_samples(src, cfg, prompts, source_id: int, n: int, rng: np.random.Generator) -> tuple[list[str], Sample]:
    builder = _robot_builder(src, cfg, prompts)
    reader, transform = builder.reader, builder.transform
    expert = cfg.action_expert
    blocks = []
    for index in rng.choice(reader.num_frames, size=min(n, reader.num_frames), replace=False):
        starts = np.cumsum([0] + [ep.length for ep in reader.episodes])
        episode_pos = int(np.searchsorted(starts, index, side="right") - 1)
        frame = int(index - starts[episode_pos])
        sample = builder.build(episode_pos, frame, source_id, rng)
        state, actions, is_pad = builder.chunk(episode_pos, frame)
        real_state = np.arange(expert.max_state_dim) < builder.state_dim
        raw_state = np.pad(transform.state(state), (0, expert.max_state_dim - builder.state_dim))
        raw_actions = np.pad(transform.to_model(state, actions), ((0, 0), (0, expert.max_action_dim - builder.action_dim)))
        episode = reader.episodes[episode_pos]
        instruction = src.instruction or reader.task(episode, frame)
        blocks.append(
            f'<div class="sample"><div>{html.escape(reader.where(episode, frame))}</div>'
            f'<div>instruction: <span class="instruction">{html.escape(instruction)}</span></div>'
            f"{_cameras(sample, reader.camera_keys)}{_prompt(sample, prompts)}<div>"
            f"{png_tag(state_plot(raw_state, real_state, 'state before normalisation'), 'plot')}"
            f"{png_tag(state_plot(sample.state, real_state, 'state after normalisation'), 'plot')}</div><div>"
            f"{png_tag(chunk_plot(raw_actions, sample.action_dim_mask, is_pad, 'actions before normalisation'), 'plot')}"
            f"</div><div>{png_tag(chunk_plot(sample.actions, sample.action_dim_mask, is_pad, 'actions after normalisation'), 'plot')}"
            "</div></div>")
    return blocks, sample


def _prompt(sample: Sample, prompts: PromptBuilder) -> str:
    texts, in_loss = _tokens(sample, prompts.tokenizer, prompts.image_token_id)
    return f"<div>{len(sample)} tokens ({sum(in_loss)} with a text loss, green):</div><div>{token_html(texts, in_loss)}</div>"


def _web_samples(src, cfg, prompts, source_id: int, n: int, rng: np.random.Generator) -> tuple[list[str], Sample]:
    stream = _web_stream(src, cfg, prompts, 0, 1, source_id, stream_id=0, num_streams=1)
    blocks, sample = [], None
    for _ in range(n):
        sample = stream.next(rng)
        blocks.append(f'<div class="sample">{_cameras(sample, [])}{_prompt(sample, prompts)}</div>')
    return blocks, sample


def attention_mask(sample: Sample, cfg, prompts: PromptBuilder) -> tuple[torch.Tensor, list[str]]:
    """The (L, L) mask of one sample as the model builds it: the prefix mask (qwen3_vl.masks, prefix-LM for
    robot samples when ``prefix_attention`` is bidirectional) and, for robot samples, the expert's suffix
    rows (action_expert.masks); plus each position's kind (image, text, pad, expert)."""
    expert = cfg.action_expert
    batch = Collator(prompts.tokenizer.pad_id, cfg.data.max_seq_len, expert.action_horizon, expert.max_action_dim,
                     expert.max_state_dim, 1, pad_to_max_seq_len=False)([sample])
    valid = batch.attention_mask
    robot = sample.actions is not None and expert.enable
    causal = not (robot and expert.prefix_attention == "bidirectional")
    prefix = build_mask(valid, batch.doc_ids, causal=causal)[0, 0]
    kinds = ["pad" if not ok else "image" if t == prompts.image_token_id else "text"
             for t, ok in zip(batch.input_ids[0].tolist(), valid[0].tolist())]
    if not robot:
        return prefix, kinds
    conditions = int(expert.state_mode == "continuous") + int(expert.fusion == "late")
    suffix = suffix_mask(valid, suffix_blocks(conditions, expert.action_horizon))[0, 0]
    top = torch.cat([prefix, torch.zeros(prefix.shape[0], suffix.shape[0], dtype=torch.bool)], dim=1)
    return torch.cat([top, suffix]), kinds + ["expert"] * suffix.shape[0]


def build_page(cfg, tokenizer, stage_name: str, n: int, seed: int) -> str:
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=0))  # one stream, in-process
    prompts = PromptBuilder(tokenizer, cfg.data)
    weights = cfg.data.mixture or {s.name: 1.0 for s in cfg.data.sources}
    by_name = {s.name: s for s in cfg.data.sources}
    sections, mask_sample = [], None
    for source_id, name in enumerate(n for n, w in weights.items() if w > 0):
        src = by_name[name]
        rng = np.random.default_rng([seed, source_id])
        make = _robot_samples if src.kind == "lerobot" else _web_samples
        blocks, last = make(src, cfg, prompts, source_id, n, rng)
        if mask_sample is None or (src.kind == "lerobot" and mask_sample.actions is None):
            mask_sample = last
        sections.append(f"<h2>source '{html.escape(name)}' ({src.kind}, weight {weights[name]:g}, "
                        f"{html.escape(src.path)})</h2>{''.join(blocks)}")
    mask, kinds = attention_mask(mask_sample, cfg, prompts)
    mask_html = (f"<h2>attention mask of one sample ({mask.shape[0]} positions; white = may attend; strip: "
                 f"orange image, blue text, green expert)</h2>{png_tag(mask_picture(mask, kinds), 'mask')}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>batch inspector: {html.escape(stage_name)}"
            f"</title><style>{PAGE_STYLE}</style></head><body><h1>stage '{html.escape(stage_name)}': what the "
            f"model receives</h1><p>image_size {cfg.data.image_size} ({cfg.data.image_resize}), augment "
            f"{cfg.data.augment}, action_horizon {cfg.action_expert.action_horizon}</p>"
            f"{''.join(sections)}{mask_html}</body></html>")


def main(argv: list[str] | None = None) -> int:
    from ..train.spec import _build_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--stage", help="stage name (default: the first)")
    parser.add_argument("--n", type=int, default=8, help="samples per source")
    parser.add_argument("--out", help="HTML file (default: inspect_<stage>.html)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        _, stages = load_stages(args.config, [])
        stage = next((s for s in stages if s.name == args.stage), None) if args.stage else stages[0]
        if stage is None:
            raise ConfigError(f"{args.config}: no stage '{args.stage}' (stages: {[s.name for s in stages]})")
        page = build_page(stage.config, _build_tokenizer(stage.config), stage.name, args.n, args.seed)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or f"inspect_{stage.name}.html"
    with open(out, "w") as f:
        f.write(page)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
