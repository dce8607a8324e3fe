"""Chat template rendering, vision-placeholder expansion and training labels against transformers 5.23.

The oracle template is Qwen3-VL Instruct's public chat template (fixtures/, 5292 bytes, sha256 3636d0f0...,
the hub text), rendered by transformers' own ``apply_chat_template``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from torchtitan_vla.processing.chat import (
    IGNORE_INDEX,
    encode_prompt,
    encode_prompt_answer,
    expand_vision_placeholders,
    render_chat,
    render_messages,
)
from torchtitan_vla.processing.processor import preprocess_image, preprocess_video
from torchtitan_vla.processing.tokenizer import build_debug_tokenizer

transformers = pytest.importorskip("transformers")
from transformers import PreTrainedTokenizerFast  # noqa: E402
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor  # noqa: E402
from transformers.video_utils import VideoMetadata  # noqa: E402

TEMPLATE_PATH = Path(__file__).parent / "fixtures" / "qwen3_vl_instruct_chat_template.jinja"
TEMPLATE_SHA256 = "3636d0f0bd6bef02654cdffdc447b79cb2cef8ab02cc75267345946291a489e4"


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    ours = build_debug_tokenizer(path)
    return ours, PreTrainedTokenizerFast(tokenizer_file=str(path))


@pytest.fixture(scope="module")
def template():
    text = TEMPLATE_PATH.read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == TEMPLATE_SHA256
    return text


def hf_processor_stub():
    """The parts of transformers' Qwen3VLProcessor that expand placeholders (its constructor needs torchvision)."""
    proc = object.__new__(Qwen3VLProcessor)
    proc.image_token, proc.video_token = "<|image_pad|>", "<|video_pad|>"
    proc.vision_start_token, proc.vision_end_token = "<|vision_start|>", "<|vision_end|>"
    proc.image_processor = proc.video_processor = SimpleNamespace(merge_size=2, temporal_patch_size=2)
    return proc


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
CONVERSATIONS = {
    "text": [SYSTEM, {"role": "user", "content": "Where is the red square?"}],
    "text_items": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
    ],
    "one_image": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}],
    "two_images": [
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"}, {"type": "image"}]}
    ],
    "video": [SYSTEM, {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}],
    "multi_turn": [
        {"role": "user", "content": [{"type": "image", "image": "cam0.png"}, {"type": "text", "text": "Go."}]},
        {"role": "assistant", "content": "move to the blue circle"},
        {"role": "user", "content": [{"type": "video"}, {"type": "image_url", "image_url": "x"}]},
    ],
}


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("add_vision_id", [False, True])
def test_render_matches_transformers_template(tokenizers, template, name, add_generation_prompt, add_vision_id):
    _, hf = tokenizers
    messages = CONVERSATIONS[name]
    expected = hf.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        add_vision_id=add_vision_id,
    )
    assert render_messages(messages, add_generation_prompt, add_vision_id) == expected


def test_image_expansion_matches_transformers_processor(template, tokenizers):
    _, hf = tokenizers
    grids = torch.stack([preprocess_image(np.zeros((h, w, 3), np.uint8))[1] for h, w in [(64, 96), (300, 200)]])
    messages = CONVERSATIONS["two_images"]
    proc = hf_processor_stub()
    replacements = [proc.replace_image_token({"image_grid_thw": grids}, i) for i in range(len(grids))]
    text = hf.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)
    expected = proc.get_text_with_replacements([text], images_replacements=replacements)[0][0]
    ours = render_chat(messages, image_grid_thw=grids, add_generation_prompt=True)
    assert ours == expected
    assert ours.count("<|image_pad|>") == int(grids.prod(dim=1).sum()) // 4


def test_video_expansion_matches_transformers_processor():
    frames = np.zeros((7, 64, 64, 3), np.uint8)
    indices = [0, 4, 9, 13, 18, 22, 27]  # frames a decoder sampled from a 30 fps clip
    _, grid, stamps = preprocess_video(frames, timestamps=[i / 30.0 for i in indices])
    proc = hf_processor_stub()
    metadata = VideoMetadata(total_num_frames=28, fps=30.0, frames_indices=np.array(indices))
    hf_frames = proc.replace_video_token({"video_grid_thw": grid[None], "video_metadata": [metadata]}, 0)
    ours = render_chat(CONVERSATIONS["video"], video_grid_thw=grid, video_timestamps=[stamps])
    # transformers 4.57 and Qwen's pipeline replace the template's whole <|vision_start|><|video_pad|>
    # <|vision_end|> by the per-frame blocks; 5.x keeps that outer pair around them. Ours is the former.
    assert f"<|im_start|>user\n{hf_frames}What happens?<|im_end|>" in ours
    assert hf_frames.startswith("<0.1 seconds><|vision_start|>")  # (0 + 4) / 2 / 30 s
    assert ours.count("<|vision_start|>") == grid[0] == 4


def test_prompt_answer_ids_and_shifted_labels(tokenizers, template):
    tok, hf = tokenizers
    grid = torch.tensor([1, 4, 6])
    prompt = CONVERSATIONS["one_image"]
    answer = "a red square at the top left."
    input_ids, labels = encode_prompt_answer(tok, prompt, answer, image_grid_thw=grid)
    assert input_ids.dtype == labels.dtype == torch.long and input_ids.shape == labels.shape

    # input_ids are the whole conversation as the template renders it, tokenized in one piece.
    full = prompt + [{"role": "assistant", "content": answer}]
    rendered = hf.apply_chat_template(full, chat_template=template, tokenize=False)
    assert input_ids.tolist() == tok.encode(expand_vision_placeholders(rendered, image_grid_thw=grid))
    assert (input_ids == tok.image_pad_id).sum() == 6

    # labels[t] is the target of position t: the next token, only inside the answer and its <|im_end|>.
    prompt_len = len(encode_prompt(tok, prompt, image_grid_thw=grid))
    answer_ids = tok.encode(answer) + [tok.im_end_id]
    targets = labels[labels != IGNORE_INDEX]
    assert targets.tolist() == answer_ids
    first = prompt_len - 1  # the "\n" after "<|im_start|>assistant" predicts the answer's first token
    assert (labels[:first] == IGNORE_INDEX).all() and (labels[first + len(answer_ids) :] == IGNORE_INDEX).all()
    torch.testing.assert_close(
        labels[first : first + len(answer_ids)], input_ids[first + 1 : first + 1 + len(answer_ids)]
    )
    assert tok.decode(input_ids[first + 1 : first + 1 + len(answer_ids)]) == answer + "<|im_end|>"


def test_generation_prompt_ends_with_assistant_opening(tokenizers):
    tok, _ = tokenizers
    ids = encode_prompt(tok, CONVERSATIONS["text"])
    assert tok.decode(ids).endswith("<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize(
    "messages,kwargs,match",
    [
        (CONVERSATIONS["one_image"], {}, "1 image and 0 video placeholders but 0 image"),
        (CONVERSATIONS["text"], {"image_grid_thw": [1, 4, 4]}, "0 image and 0 video placeholders but 1 image"),
        (CONVERSATIONS["video"], {"video_grid_thw": [2, 4, 4], "video_timestamps": [[0.5]]}, "2 temporal patches"),
        (CONVERSATIONS["video"], {"video_grid_thw": [2, 4, 4]}, "1 video grids but 0 timestamp lists"),
        (CONVERSATIONS["one_image"], {"image_grid_thw": [[1, 4]]}, r"shape \(n, 3\)"),
        ([{"role": "assistant", "content": [{"type": "image"}]}], {}, "only user messages"),
        ([{"role": "user", "content": "a"}, SYSTEM], {}, "must be the first"),
        ([{"role": "tool", "content": "a"}], {}, "unsupported role 'tool'"),
        ([{"role": "user", "content": [{"type": "audio"}]}], {}, "neither text, image nor video"),
        ([{"role": "user"}], {}, "has no content"),
        ([], {}, "empty"),
    ],
)
def test_bad_conversations_are_rejected(messages, kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_chat(messages, **kwargs)


def test_answer_turn_must_not_be_in_the_prompt(tokenizers):
    tok, _ = tokenizers
    with pytest.raises(ValueError, match="must not end with an assistant"):
        encode_prompt_answer(tok, CONVERSATIONS["multi_turn"][:2], "again")
