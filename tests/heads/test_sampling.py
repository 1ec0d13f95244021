import pytest
import torch

from facescale.distributed.class_range import ClassRange
from facescale.heads.sampling import num_sampled, sample_classes


def _sample(labels, classes, rate, seed=0):
    return sample_classes(torch.tensor(labels), classes, rate, torch.Generator().manual_seed(seed))


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
