"""Real-time chunking: inference-time guidance with a frozen prefix, training-time prefix conditioning."""

import pytest
import torch

from tests.models.vla.helpers import make_batch, tiny_vla
from torchtitan_vla.models.action_expert.flow import noisy_actions, velocity_target
from torchtitan_vla.models.action_expert.rtc import RTCInputs, guidance_weight, prefix_weights, sample_delays
from torchtitan_vla.models.vla import ForwardOptions
from torchtitan_vla.models.vla.options import RTCPrefix
from torchtitan_vla.train.forward_backward import forward_backward
from torchtitan_vla.train.loss import LOSS_TERMS, LossWeights, per_sample_counts

EXPERTS = [dict(fusion="joint"), dict(fusion="late"), dict(fusion="joint", time_conditioning="adarms"),
           dict(fusion="late", time_conditioning="adarms")]
IDS = ["joint", "late", "joint-adarms", "late-adarms"]


def _vla(**expert):
    vla = tiny_vla(action_horizon=8, **expert)
    for name, param in vla.named_parameters():
        if "modulation" in name:  # adaRMS starts as the identity; give the time a say
            param.data.normal_(0, 0.1)
    return vla


def test_soft_mask_matches_the_paper_schedule():
    """d = 2, overlap end 6, H = 10: 1 1 then the ramp 4/5 .. 1/5 (exp: c (e^c - 1) / (e - 1)), then 0."""
    linear = prefix_weights(torch.tensor([2]), torch.tensor([6]), 10, "linear")[0]
    torch.testing.assert_close(linear, torch.tensor([1, 1, 0.8, 0.6, 0.4, 0.2, 0, 0, 0, 0]))
    exp = prefix_weights(torch.tensor([2]), torch.tensor([6]), 10, "exp")[0]
    ramp = torch.tensor([0.8, 0.6, 0.4, 0.2])
    torch.testing.assert_close(exp[2:6], ramp * torch.expm1(ramp) / torch.expm1(torch.tensor(1.0)))
    assert exp[:2].tolist() == [1, 1] and exp[6:].tolist() == [0] * 4


def test_guidance_weight_is_the_papers_clipped_at_beta():
    # paper (tau = 1 - t): min(beta, (1 - tau) / (tau * r^2)), r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2)
    for t in (0.1, 0.5, 0.9):
        tau = 1 - t
        r2 = (1 - tau) ** 2 / (tau**2 + (1 - tau) ** 2)
        assert guidance_weight(t, 100.0) == pytest.approx((1 - tau) / (tau * r2))
    assert guidance_weight(1.0, 5.0) == 5.0 and guidance_weight(0.9, 5.0) == 5.0


@pytest.mark.parametrize("expert", EXPERTS[:2], ids=IDS[:2])
def test_no_overlap_and_no_delay_is_plain_sampling_bit_for_bit(expert):
    vla = _vla(**expert)
    batch = make_batch(vla)
    noise = torch.randn(2, 8, 6)
    plain = vla.sample_actions(batch, num_steps=3, noise=noise)
    rtc = RTCInputs.build(torch.zeros(2, 0, 6), delay=0, execution_horizon=0)
    assert torch.equal(vla.sample_actions(batch, num_steps=3, noise=noise, rtc=rtc), plain)


@pytest.mark.parametrize("expert", EXPERTS, ids=IDS)
@pytest.mark.parametrize("prefix_conditioning", [False, True], ids=["guided", "training-time"])
def test_frozen_prefix_is_the_previous_chunk_exactly(expert, prefix_conditioning):
    vla = _vla(**expert)
    batch = make_batch(vla, action_dims=(6, 6))
    prev = torch.randn(2, 8, 6)
    rtc = RTCInputs.build(prev, delay=torch.tensor([3, 1]), execution_horizon=2,
                          prefix_conditioning=prefix_conditioning)
    chunk = vla.sample_actions(batch, num_steps=3, rtc=rtc)
    assert torch.equal(chunk[0, :3], prev[0, :3]) and torch.equal(chunk[1, :1], prev[1, :1])
    assert not torch.equal(chunk[1, 1:3], prev[1, 1:3])


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "full-pass"])
@pytest.mark.parametrize("expert", EXPERTS[:2], ids=IDS[:2])
def test_guided_overlap_is_closer_to_the_previous_chunk_than_unguided(expert, use_cache):
    """The previous chunk is the policy's own earlier sample (other noise), as on a robot. Over the guided
    steps [d, H - s) the mask-weighted distance drops, measured over several draws."""
    vla = _vla(**expert)
    batch = make_batch(vla, action_dims=(6, 6))
    torch.manual_seed(1)
    guided_err, free_err = [], []
    for _ in range(3):
        prev = vla.sample_actions(batch, num_steps=5)
        noise = torch.randn(2, 8, 6)
        rtc = RTCInputs.build(prev, delay=2, execution_horizon=2, schedule="linear")
        weights = rtc.padded(8, 6)[2][:, :, None]
        guided = vla.sample_actions(batch, num_steps=5, noise=noise, rtc=rtc, use_cache=use_cache)
        free = vla.sample_actions(batch, num_steps=5, noise=noise, use_cache=use_cache)
        overlap = slice(2, 6)
        guided_err.append(((guided - prev) * weights)[:, overlap].norm())
        free_err.append(((free - prev) * weights)[:, overlap].norm())
    assert sum(guided_err) < 0.5 * sum(free_err)


def test_cached_and_full_pass_guidance_agree():
    vla = _vla(fusion="joint")
    batch = make_batch(vla)
    rtc = RTCInputs.build(torch.randn(2, 6, 3), delay=1, execution_horizon=3)
    noise = torch.randn(2, 8, 6)
    cached = vla.sample_actions(batch, num_steps=3, noise=noise, rtc=rtc)
    full = vla.sample_actions(batch, num_steps=3, noise=noise, rtc=rtc, use_cache=False)
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-4)


def test_bad_rtc_inputs_name_the_field():
    vla = _vla()
    batch = make_batch(vla)
    with pytest.raises(ValueError, match="rtc prev_actions has shape"):
        vla.sample_actions(batch, num_steps=1, rtc=RTCInputs.build(torch.zeros(2, 9, 6), 0, 0))
    with pytest.raises(ValueError, match="rtc delay"):
        vla.sample_actions(batch, num_steps=1, rtc=RTCInputs.build(torch.zeros(2, 8, 6), 9, 0))
    with pytest.raises(ValueError, match="3 chunks for a batch of 2"):
        vla.sample_actions(batch, num_steps=1, rtc=RTCInputs.build(torch.zeros(3, 8, 6), 0, 0))


@pytest.mark.parametrize("expert", EXPERTS, ids=IDS)
def test_training_time_rtc_gives_prefix_steps_no_loss(expert):
    """With d = 3 for every sample: the loss is the plain squared error over steps >= 3 of a pass whose
    first 3 steps are clean at t = 0; noise on the prefix steps changes nothing."""
    vla = _vla(**expert)
    batch = make_batch(vla, action_dims=(6, 6))
    plain = vla(batch, noise=(noise := torch.randn(2, 8, 6)), time=(time := torch.tensor([0.3, 0.8]))).action
    batch.action_prefix = torch.tensor([3, 3])
    sums = vla(batch, noise=noise, time=time).action
    other_noise = noise.clone()
    other_noise[:, :3] = torch.randn(2, 3, 6) * 10
    assert torch.equal(vla(batch, noise=other_noise, time=time).action, sums)

    per_step = torch.where(torch.arange(8) < 3, 0.0, time[:, None])
    x_t = noisy_actions(batch.actions, noise, per_step)
    assert torch.equal(x_t[:, :3], batch.actions[:, :3])  # the prefix enters clean
    velocity = vla.velocity(vla.observe(batch), x_t, per_step)
    expected = (velocity - velocity_target(batch.actions, noise))[:, 3:].square().sum(dim=(1, 2))
    torch.testing.assert_close(sums, expected)
    assert (sums < plain).all()  # fewer steps count


def test_training_time_rtc_normalises_over_target_steps_only():
    """Prefix steps are inputs, not targets: they count neither in the loss sum nor in its denominator, so
    the logged action loss is the mean squared error over the steps after the prefix."""
    vla = _vla()
    batch = make_batch(vla, action_dims=(6, 4), steps=(8, 5))  # sample 1: 4 real dims, 3 padded steps
    batch.action_prefix = torch.tensor([2, 4])
    assert per_sample_counts(batch)[1].tolist() == [(8 - 2) * 6, (5 - 4) * 4]

    options = ForwardOptions(rtc_prefix=RTCPrefix(min_delay=3, max_delay=3))
    batch.action_prefix = None
    torch.manual_seed(0)
    with torch.no_grad():
        losses = forward_backward(vla, [batch], weights=LossWeights(), options=options, dp_mesh=None, backward=False)
    assert batch.action_prefix is None  # the caller's batch is left as it was
    assert losses.counts[1] == (8 - 3) * 6 + (5 - 3) * 4
    torch.manual_seed(0)
    sample_delays(2, 3, 3, "uniform", torch.device("cpu"))  # the draw forward_backward made
    batch.action_prefix = torch.tensor([3, 3])
    with torch.no_grad():
        sums = vla(batch).action
    mean = LOSS_TERMS.index("action")
    assert losses.term_losses(losses.sums)["action"] == pytest.approx(float(sums.sum()) / float(losses.counts[mean]))


def test_training_time_rtc_draws_delays_in_range():
    from torchtitan_vla.models.action_expert.rtc import sample_delays

    torch.manual_seed(0)
    for distribution in ("uniform", "exponential"):
        delays = sample_delays(4000, 1, 4, distribution, torch.device("cpu"))
        counts = torch.bincount(delays, minlength=5)
        assert counts[0] == 0 and (counts[1:] > 0).all()
        if distribution == "exponential":
            assert counts[1] > counts[2] > counts[3] > counts[4]


def test_the_stage_option_reaches_the_forward_options_and_is_checked():
    from torchtitan_vla.config import load_stages
    from torchtitan_vla.config.errors import ConfigError
    from torchtitan_vla.train.trainer import forward_options

    horizon = ("action_expert.action_horizon", "8")
    _, stages = load_stages(None, [("training.rtc_max_delay", "4"), ("training.rtc_delay_distribution", "exponential"),
                                   horizon])
    assert forward_options(stages[0].config).rtc_prefix == RTCPrefix(0, 4, "exponential")
    _, stages = load_stages(None, [horizon])
    assert forward_options(stages[0].config).rtc_prefix is None  # off by default
    with pytest.raises(ConfigError, match="'training.rtc_max_delay' 8 must lie in"):
        load_stages(None, [("training.rtc_max_delay", "8"), horizon])
