"""A small stand-in VLA and a synthetic data mixture with the real interfaces (components, blocks,
init_weights, forward(batch, options) -> per-sample LossSums; a StatefulDataLoader of Batch objects), so
the trainer's tests exercise the loop, checkpoints and curriculum in seconds."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from torchtitan_vla.data.batch import Batch
from torchtitan_vla.models.action_expert.flow import valid_action_mask
from torchtitan_vla.models.vla.options import ForwardOptions, LossSums
from torchtitan_vla.train.spec import TrainSpec

VOCAB, DIM, PATCH_DIM, PATCHES, SEQ = 48, 16, 12, 4, 12
SOURCES = {"web": False, "robot_a": True, "robot_b": True}  # name -> has actions


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Vision(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Linear(PATCH_DIM, DIM)
        self.blocks = nn.ModuleList([Block(DIM) for _ in range(2)])

    def forward(self, pixel_values):
        x = self.patch_embed(pixel_values)
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList([Block(DIM) for _ in range(2)])
        self.norm = nn.LayerNorm(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)


class Expert(nn.Module):
    def __init__(self, horizon: int, action_dim: int, state_dim: int):
        super().__init__()
        self.action_in = nn.Linear(action_dim, DIM)
        self.state_in = nn.Linear(state_dim, DIM)
        self.time_in = nn.Linear(1, DIM)
        self.blocks = nn.ModuleList([Block(DIM) for _ in range(2)])
        self.action_out = nn.Linear(DIM, action_dim)


class StandInVLA(nn.Module):
    def __init__(self, horizon: int, action_dim: int, state_dim: int):
        super().__init__()
        self.vision = Vision()
        self.decoder = Decoder()
        self.expert = Expert(horizon, action_dim, state_dim)

    def components(self) -> dict[str, nn.Module]:
        return {"vision": self.vision, "decoder": self.decoder, "expert": self.expert}

    def blocks(self, name: str) -> list[nn.Module]:
        return list({"vision": self.vision.blocks, "decoder": self.decoder.layers, "expert": self.expert.blocks}[name])

    def set_trainable(self, trainable: list[str]) -> None:
        for name, part in self.components().items():
            part.requires_grad_(name in trainable)

    def init_weights(self, buffer_device=None) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.2)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, batch: Batch, options: ForwardOptions = ForwardOptions()) -> LossSums:  # noqa: B008 (frozen)
        ids, labels = batch.input_ids, batch.labels
        b = ids.shape[0]
        image = self.vision(batch.pixel_values).view(b, PATCHES, DIM).mean(1)
        h = self.decoder.tok_embeddings(ids) + image[:, None]
        for layer in self.decoder.layers:
            h = layer(h)
        logits = self.decoder.lm_head(self.decoder.norm(h))
        ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none").view(b, -1)
        actions = batch.actions
        flow = options.flow_time
        t = torch.distributions.Beta(flow.alpha, flow.beta).sample((b,)).to(ids.device) * flow.scale + flow.offset
        noise = torch.randn_like(actions)
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        e = self.expert
        context = h.mean(1).detach() if options.knowledge_insulation else h.mean(1)
        z = e.action_in(x_t) + (e.state_in(batch.state) + context + e.time_in(t[:, None]))[:, None]
        for block in e.blocks:
            z = block(z)
        valid = valid_action_mask(batch.action_dim_mask, batch.action_is_pad, batch.has_actions)
        action_sq = ((e.action_out(z) - (noise - actions)) ** 2 * valid).sum(dim=(1, 2))
        robot = batch.robot_rows
        return LossSums(text=torch.where(robot, 0.0, ce.sum(1)), action=action_sq,
                        subtask=torch.where(robot, ce.sum(1), 0.0), fast=torch.zeros_like(action_sq))


class SyntheticMixture(IterableDataset):
    """Samples of the mixture's sources, a pure function of (seed, rank, index): resumable by index."""

    def __init__(self, names: list[str], weights: list[float], seed: int, rank: int, horizon: int, action_dim: int,
                 state_dim: int):
        self.names, self.seed, self.rank = names, seed, rank
        self.p = np.asarray(weights, np.float64) / sum(weights)
        self.horizon, self.action_dim, self.state_dim = horizon, action_dim, state_dim
        self.index = 0

    def sample(self, index: int) -> dict:
        rng = np.random.default_rng((self.seed, self.rank, index))
        source = int(rng.choice(len(self.names), p=self.p))
        robot = SOURCES[self.names[source]]
        ids = rng.integers(1, VOCAB, SEQ)
        labels = np.roll(ids, -1)
        labels[-1] = -100
        if robot:
            labels[: SEQ - 2] = -100
        ad = 3 if self.names[source] == "robot_a" else 2
        dim_mask = np.arange(self.action_dim) < ad
        actions = np.where(dim_mask, rng.normal(size=(self.horizon, self.action_dim)), 0.0) * robot
        return {
            "input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
            "pixel_values": torch.tensor(rng.normal(size=(PATCHES, PATCH_DIM)), dtype=torch.float32),
            "state": torch.tensor(rng.normal(size=self.state_dim) * robot, dtype=torch.float32),
            "actions": torch.tensor(actions, dtype=torch.float32),
            "action_is_pad": torch.tensor(np.arange(self.horizon) >= self.horizon - int(rng.integers(0, 2))),
            "action_dim_mask": torch.tensor(dim_mask & robot), "has_actions": torch.tensor(robot),
            "source_id": torch.tensor(source),
        }

    def __iter__(self):
        while True:
            self.index += 1
            yield self.sample(self.index - 1)

    def state_dict(self) -> dict:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.index = state["index"]


def collate(samples: list[dict]) -> Batch:
    stacked = {k: torch.stack([s[k] for s in samples]) for k in samples[0] if k != "pixel_values"}
    b = len(samples)
    return Batch(
        **stacked,
        pixel_values=torch.cat([s["pixel_values"] for s in samples]),
        image_grid_thw=torch.tensor([[1, 2, PATCHES // 2]] * b),
        attention_mask=torch.ones(b, SEQ, dtype=torch.bool),
        position_ids=torch.arange(SEQ).expand(3, b, SEQ).clone(),
        doc_ids=torch.zeros(b, SEQ, dtype=torch.long),
    )


class Loader(StatefulDataLoader):
    def __init__(self, dataset: SyntheticMixture, batch_size: int):
        super().__init__(dataset, batch_size=batch_size, collate_fn=collate, num_workers=0)
        self.source_names = dataset.names
        self.skipped_per_source = dict.fromkeys(dataset.names, 0)  # synthetic samples are never corrupt


def build_loader(cfg, tokenizer, dp_rank: int, dp_world_size: int, split: str) -> Loader:
    weights = cfg.data.mixture or dict.fromkeys(SOURCES, 1.0)
    unknown = sorted(set(weights) - set(SOURCES))
    if unknown:
        raise ValueError(f"mixture names unknown data sources {unknown}")
    names = [n for n in weights if weights[n] > 0]
    seed = cfg.job.seed + (7_777 if split != "train" else 0)
    ex = cfg.action_expert
    dataset = SyntheticMixture(names, [weights[n] for n in names], seed, dp_rank, ex.action_horizon,
                               ex.max_action_dim, ex.max_state_dim)
    return Loader(dataset, cfg.training.local_batch_size)


def standin_spec() -> TrainSpec:
    ex = lambda cfg: cfg.action_expert  # noqa: E731
    return TrainSpec(
        build_tokenizer=lambda cfg: None,
        build_model=lambda cfg, tok: StandInVLA(ex(cfg).action_horizon, ex(cfg).max_action_dim, ex(cfg).max_state_dim),
        build_dataloader=build_loader,
    )
