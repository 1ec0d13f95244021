import pytest
import torch

from facescale.bench.host_syncs import HostSyncCensus
from facescale.distributed.class_range import ClassRange
from facescale.heads.sampling import num_sampled, row_scores, sample_classes, sampling_seed


def _sample(labels, classes, rate, seed=0):
    return sample_classes(torch.tensor(labels), classes, rate, sampling_seed(seed, 0, 0))


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.35, 0.5, 0.9])
def test_positives_kept_size_right_labels_remapped(rate):
    classes = ClassRange(100, 140)
    labels = [5, 101, 101, 139, 120, 300, 100, 0]
    s = _sample(labels, classes, rate)
    positives = sorted({y - 100 for y in labels if 100 <= y < 140})
    assert set(positives) <= set(s.index.tolist())
    assert len(s.index) == max(num_sampled(rate, 40), len(positives))
    assert s.index.tolist() == sorted(set(s.index.tolist()))  # sorted, no duplicates
    for y, mapped in zip(labels, s.labels.tolist()):
        if 100 <= y < 140:
            assert int(s.index[mapped]) + 100 == y
        else:
            assert mapped == -1
    assert s.num_positives == len(positives)


def test_rate_one_keeps_every_row():
    s = _sample([3, 4], ClassRange(0, 10), 1.0)
    assert s.full and s.index.tolist() == list(range(10))
    assert s.labels.tolist() == [3, 4]


def test_rate_zero_keeps_positives_only():
    s = _sample([3, 4, 3, 12], ClassRange(0, 10), 0.0)
    assert s.index.tolist() == [3, 4] and s.labels.tolist() == [0, 1, 0, -1]


def test_negatives_are_reproducible_and_vary_with_the_seed():
    classes = ClassRange(0, 1000)
    a = _sample([1, 2], classes, 0.1, seed=5).index
    b = _sample([1, 2], classes, 0.1, seed=5).index
    c = _sample([1, 2], classes, 0.1, seed=6).index
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_negatives_are_roughly_uniform():
    classes = ClassRange(0, 50)
    counts = torch.zeros(50)
    for seed in range(400):
        counts[_sample([0], classes, 0.2, seed=seed).index] += 1
    negatives = counts[1:] / 400  # each of 49 negatives is drawn with probability 9 / 49
    assert counts[0] == 400
    assert float((negatives - 9 / 49).abs().max()) < 0.08


def _python_scores(key, n):
    """The hash of ``row_scores`` in plain Python integers: what every device must compute."""

    def mix(x, a, b):
        x ^= x >> 16
        x = (x * a) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * b) & 0xFFFFFFFF
        return x ^ (x >> 16)

    out = []
    for row in range(n):
        x = (row + (key & 0xFFFFFFFF)) & 0xFFFFFFFF
        x = mix(x, 0x7FEB352D, 0x2C1B3C6D) ^ ((key >> 32) & 0xFFFFFFFF)
        x = mix(x, 0x297A2D39, 0x6B5F0D5B)
        out.append((x >> 1) * 2**31 + row)
    return out


def test_scores_are_exact_integer_arithmetic_so_every_device_agrees():
    key = sampling_seed(7, 3, 1)
    assert row_scores(key, 300, torch.device("cpu")).tolist() == _python_scores(key, 300)
    scores = row_scores(key, 100_000, torch.device("cpu"))
    assert len(set(scores.tolist())) == 100_000 and int(scores.min()) >= 0 and int(scores.max()) < 2**62


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_draws_the_same_sample_as_the_cpu():
    labels = torch.randint(0, 5000, (256,), generator=torch.Generator().manual_seed(0))
    key = sampling_seed(3, 11, 0)
    on_cpu = sample_classes(labels, ClassRange(1000, 4000), 0.1, key)
    on_gpu = sample_classes(labels.cuda(), ClassRange(1000, 4000), 0.1, key)
    assert torch.equal(on_cpu.index, on_gpu.index.cpu()) and torch.equal(on_cpu.labels, on_gpu.labels.cpu())


def test_sampling_at_a_practical_rate_needs_no_host_sync():
    labels = torch.randint(0, 100_000, (128,), generator=torch.Generator().manual_seed(0))
    with HostSyncCensus() as census:
        sample = sample_classes(labels, ClassRange(0, 100_000), 0.1, sampling_seed(0, 0, 0))
    assert census.ops == {} and sample.index.numel() == 10_000
