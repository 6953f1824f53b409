"""Elastic super network: kernel transforms, extraction equivalence, channel sorting, BN recalibration."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from ems_ray.data import make_loader
from ems_ray.space import InvalidSubnetError, SearchSpace, load_preset
from ems_ray.supernet import (
    ElasticBatchNorm2d, ElasticDepthwiseConv, ElasticSuperNet, MBBlock, evaluate, recalibrate_bn, uses_channels_last,
)

@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: tiny tensors gain nothing from two, and two threads stall badly when
    another process (a training run, a parallel test) holds one of this machine's two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return load_preset("fmnist-small")


def _perturb(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics/affine and kernel transforms, so equality checks mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            if isinstance(m, ElasticDepthwiseConv):
                for p in m.transforms.values():
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.fixture(scope="module")
def net(space: SearchSpace) -> ElasticSuperNet:
    torch.manual_seed(0)
    return _perturb(ElasticSuperNet(space)).eval()


def _x(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_kernel_transform_chain():
    torch.manual_seed(0)
    conv = ElasticDepthwiseConv(6, [3, 5, 7])
    assert set(conv.transforms) == {"7to5", "5to3"}
    w7 = conv.weight.detach()
    # Identity transforms: the small kernels are centre crops.
    assert torch.equal(conv.kernel_weight(3), w7[:, :, 2:5, 2:5])
    with torch.no_grad():
        for p in conv.transforms.values():
            p.add_(0.1 * torch.randn(p.shape))
    t75, t53 = conv.transforms["7to5"].detach(), conv.transforms["5to3"].detach()
    w5 = (w7[:, :, 1:6, 1:6].reshape(6, 25) @ t75).reshape(6, 1, 5, 5)
    w3 = (w5[:, :, 1:4, 1:4].reshape(6, 9) @ t53).reshape(6, 1, 3, 3)
    torch.testing.assert_close(conv.kernel_weight(5), w5)
    torch.testing.assert_close(conv.kernel_weight(3), w3)
    torch.testing.assert_close(conv.kernel_weight(3, channels=4), w3[:4])
    with pytest.raises(ValueError, match="allowed values"):
        conv.kernel_weight(4)


@pytest.mark.parametrize("channels_last", [False, True])
def test_extract_matches_supernet(space, net, channels_last):
    model = net.to(memory_format=torch.channels_last) if channels_last else net
    x = _x()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    rows = [net.genome.largest()[0], net.genome.smallest()[0], *net.genome.sample(rng, 4)]
    for row in rows:
        model.set_active(row)
        static = model.extract().eval()
        assert uses_channels_last(static.stem.conv.weight) == channels_last
        with torch.no_grad():
            torch.testing.assert_close(static(x), model(x), atol=1e-5, rtol=0)
        assert list(static.blocks) == [str(i) for i in model.active_slots()]
    net.to(memory_format=torch.contiguous_format)


def test_static_net_is_walkable(space, net):
    cfg = net.genome.to_config(net.genome.sample(np.random.default_rng(2), 1)[0])
    static = net.extract(cfg)
    assert static.config == cfg
    names = dict(static.named_modules())
    for i, block in static.blocks.items():
        assert isinstance(block, MBBlock) and block.slot_index == int(i)
        bc = cfg.blocks[int(i)]
        assert block.config == bc
        for part in ("expand", "dw", "project"):
            assert type(names[f"blocks.{i}.{part}"]) is nn.Conv2d
        assert block.dw.groups == block.dw.in_channels == bc.mid_channels
        assert block.dw.kernel_size == (bc.kernel, bc.kernel)
    assert not any(isinstance(m, ElasticBatchNorm2d) for m in static.modules())


def test_set_active_config_equals_genes_and_validates(space, net):
    row = net.genome.sample(np.random.default_rng(3), 1)[0]
    x = _x()
    net.set_active(row)
    with torch.no_grad():
        a = net(x)
    net.set_active(net.genome.to_config(row))
    with torch.no_grad():
        torch.testing.assert_close(net(x), a, atol=0, rtol=0)
    assert len(net.active_slots()) == sum(net.active_depths)
    bad = net.genome.to_config(row).model_copy(update={"depths": [9] * len(space.stages)})
    with pytest.raises(InvalidSubnetError, match="depths"):
        net.set_active(bad)
    with pytest.raises(ValueError, match="entries"):
        net.set_active(row[:-1])
    with pytest.raises(ValueError, match="out of range"):
        net.set_active(row + 50)


def test_sample_active_respects_elastic_dimensions(space, net):
    rng = np.random.default_rng(4)
    for _ in range(5):
        net.sample_active(rng, elastic=("kernel",))
        assert net.active_depths == [max(s.depth_choices) for s in space.stages]
        assert all(b.active_mid == b.max_mid for b in net.blocks)
    kernels = set()
    for _ in range(10):
        net.sample_active(rng)
        kernels |= {b.active_kernel for b in net.blocks}
    assert kernels == set(space.kernel_choices)
    with pytest.raises(ValueError, match="allowed values"):
        net.sample_active(rng, elastic=("width",))


def test_sort_channels_keeps_function_and_orders_importance(space):
    torch.manual_seed(5)
    sn = _perturb(ElasticSuperNet(space), seed=5).eval()
    sn.set_active(sn.genome.largest()[0])
    x = _x()
    with torch.no_grad():
        before = sn(x)
        perms = sn.sort_channels()
        torch.testing.assert_close(sn(x), before, atol=1e-5, rtol=0)
    assert len(perms) == len(space.slots)
    for block in sn.blocks:
        importance = block.project.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(importance[:-1] >= importance[1:])


def test_training_touches_only_active_slices(space):
    torch.manual_seed(6)
    sn = ElasticSuperNet(space).train()
    sn.set_active(sn.genome.smallest()[0])
    block = sn.blocks[0]
    mid = block.active_mid
    stats_before = block.expand_bn.running_mean.clone()
    loss = nn.functional.cross_entropy(sn(_x(8)), torch.arange(8) % 10)
    loss.backward()
    assert block.expand.weight.grad[mid:].abs().sum() == 0
    assert block.expand.weight.grad[:mid].abs().sum() > 0
    assert torch.equal(block.expand_bn.running_mean[mid:], stats_before[mid:])
    assert not torch.equal(block.expand_bn.running_mean[:mid], stats_before[:mid])
    inactive = [i for i in range(len(space.slots)) if i not in sn.active_slots()]
    assert inactive and all(sn.blocks[i].expand.weight.grad is None for i in inactive)


def _loader(n: int = 48, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ds = TensorDataset(torch.randn(n, 1, 28, 28, generator=g) * 2 + 0.5, torch.randint(0, 10, (n,), generator=g))
    return make_loader(ds, 16)


def test_recalibrate_bn_estimates_batch_statistics(space):
    torch.manual_seed(7)
    sn = _perturb(ElasticSuperNet(space)).train()
    sn.stem.bn.momentum = 0.1
    loader = _loader()
    recalibrate_bn(sn, loader, num_batches=2)
    assert not sn.training and sn.stem.bn.momentum == 0.1 and not sn.head.dropout.training
    images = torch.cat([x for x, _ in list(loader)[:2]])
    with torch.no_grad():
        pre = sn.stem.conv(images)
    torch.testing.assert_close(sn.stem.bn.running_mean, pre.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)


def test_recalibrated_supernet_and_extracted_agree(space):
    torch.manual_seed(8)
    sn = _perturb(ElasticSuperNet(space), seed=8)
    sn.sample_active(np.random.default_rng(8))
    static = sn.extract()
    loader = _loader()
    recalibrate_bn(sn, loader, 3)
    recalibrate_bn(static, loader, 3)
    x = _x(6, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(static(x), sn(x), atol=1e-4, rtol=1e-4)
    acc_sn, loss_sn = evaluate(sn, loader)
    acc_st, loss_st = evaluate(static, loader)
    assert acc_sn == pytest.approx(acc_st) and loss_sn == pytest.approx(loss_st, rel=1e-4)


def test_evaluate_counts_accuracy_and_loss():
    class Oracle(nn.Module):
        """Predicts class 0 with certainty; a dummy parameter gives it a device."""

        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.tensor([10.0] + [0.0] * 9).expand(len(x), 10) + 0 * self.p

    labels = torch.tensor([0, 0, 1, 2, 0, 3, 0, 0])
    loader = make_loader(TensorDataset(torch.zeros(8, 1, 2, 2), labels), 4)
    acc, loss = evaluate(Oracle(), loader)
    assert acc == pytest.approx(5 / 8)
    logp = torch.log_softmax(torch.tensor([10.0] + [0.0] * 9), 0)
    assert loss == pytest.approx(float(-(logp[labels]).mean()), rel=1e-5)
    acc_first, _ = evaluate(Oracle(), loader, max_batches=1)
    assert acc_first == pytest.approx(2 / 4)


def test_train_step_on_sampled_subnets(space):
    torch.manual_seed(9)
    sn = ElasticSuperNet(space).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(sn.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(9)
    x, y = _x(16).contiguous(memory_format=torch.channels_last), torch.arange(16) % 10
    for _ in range(3):
        sn.sample_active(rng)
        loss = nn.functional.cross_entropy(sn(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)


def test_supernet_accepts_space_names_and_other_presets():
    sn = ElasticSuperNet("apq-imagenet")
    assert len(sn.blocks) == len(load_preset("apq-imagenet").slots)
    assert sn.blocks[0].dw.weight.shape[-1] == 7
