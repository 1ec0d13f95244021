import itertools

import pytest
import torch

from facescale.distributed.class_range import ClassRange, all_class_ranges, class_range, owner_of
from facescale.errors import FacescaleError


@pytest.mark.parametrize(("num_classes", "world"), [(10, 1), (10, 3), (11, 4), (7, 7), (1000, 6)])
def test_ranges_tile_the_classes_evenly(num_classes, world):
    ranges = all_class_ranges(num_classes, world)
    assert ranges[0].start == 0 and ranges[-1].stop == num_classes
    for a, b in itertools.pairwise(ranges):
        assert a.stop == b.start
    sizes = [len(r) for r in ranges]
    extra = num_classes % world
    assert sizes == [num_classes // world + 1] * extra + [num_classes // world] * (world - extra)


@pytest.mark.parametrize(("num_classes", "world"), [(10, 3), (11, 4), (5, 5), (23, 2)])
def test_owner_of_matches_a_scan_of_the_ranges(num_classes, world):
    ranges = all_class_ranges(num_classes, world)
    labels = torch.arange(num_classes)
    expected = [next(r for r, cr in enumerate(ranges) if label in cr) for label in range(num_classes)]
    assert owner_of(labels, num_classes, world).tolist() == expected


def test_intersection_and_membership():
    a, b = ClassRange(0, 5), ClassRange(3, 9)
    assert a.intersect(b) == ClassRange(3, 5)
    assert ClassRange(0, 3).intersect(ClassRange(3, 6)) is None
    assert 4 in a and 5 not in a


def test_fewer_classes_than_ranks_is_an_error():
    with pytest.raises(FacescaleError, match="num_classes 2 is smaller than the world size 3"):
        class_range(2, 3, 0)
    with pytest.raises(FacescaleError, match="rank 3"):
        class_range(10, 3, 3)
