
from tests.train.standin import StandInVLA
from torchtitan_vla.config.training import Optimizer
from torchtitan_vla.train.optimizer import build_optimizer


def _model():
    model = StandInVLA(horizon=4, action_dim=4, state_dim=3)
    model.init_weights()
    return model


def test_groups_per_component_with_own_lr_and_no_decay_on_norms_biases_embeddings():
    model = _model()
    cfg = Optimizer(lr=1e-3, weight_decay=0.1, component_lr={"vision": 1e-5}, component_weight_decay={"expert": 0.0})
    opt = build_optimizer(model.components(), cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {f"{c}{s}" for c in ("vision", "decoder", "expert") for s in ("", ".no_decay")}
    assert groups["vision"]["peak_lr"] == 1e-5 and groups["decoder"]["peak_lr"] == 1e-3
    assert groups["decoder"]["weight_decay"] == 0.1 and groups["expert"]["weight_decay"] == 0.0
    no_decay = {id(p) for name, g in groups.items() if name.endswith("no_decay") for p in g["params"]}
    assert id(model.decoder.tok_embeddings.weight) in no_decay
    assert id(model.decoder.norm.weight) in no_decay and id(model.vision.blocks[0].fc1.bias) in no_decay
    assert id(model.decoder.lm_head.weight) not in no_decay
    assert all(g["weight_decay"] == 0.0 for name, g in groups.items() if name.endswith("no_decay"))


def test_frozen_components_get_no_group():
    model = _model()
    model.set_trainable(["expert"])
    opt = build_optimizer(model.components(), Optimizer())
    assert {g["name"] for g in opt.param_groups} == {"expert", "expert.no_decay"}
    assert not any(p.requires_grad for p in model.decoder.parameters())
