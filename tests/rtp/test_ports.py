import itertools
import random

import pytest

from srs.errors import ServiceUnavailable, UsageError
from srs.rtp.ports import PortPool


def pool(port_min: int, port_max: int, *, cooldown_s: float = 0, seed: int = 7) -> PortPool:
    return PortPool(port_min, port_max, cooldown_s=cooldown_s, rng=random.Random(seed))


def test_blocks_of_consecutive_even_ports_until_the_range_is_used_up() -> None:
    ports = pool(10000, 10010, cooldown_s=5)
    assert ports.capacity == 6
    taken: list[int] = []
    for count in (2, 3, 1):
        block = ports.allocate(count, now=0)
        assert block == list(range(block[0], block[0] + 2 * count, 2))
        taken += block
    assert sorted(taken) == list(range(10000, 10012, 2))
    assert ports.in_use == 6
    with pytest.raises(ServiceUnavailable) as info:
        ports.allocate(1, now=0)
    assert info.value.status == 503 and info.value.retry_after_s == 10


def test_blocks_start_at_random_places_in_the_range() -> None:
    # A fresh server's first call does not sit on port_min, and a call's ports do not
    # follow from the previous call's.
    firsts = {pool(10000, 20000, seed=seed).allocate(2, now=0)[0] for seed in range(50)}
    assert len(firsts) >= 45 and 10000 not in firsts
    ports = pool(10000, 20000)
    blocks = [ports.allocate(2, now=0) for _ in range(50)]
    follows = sum(b[0] == a[-1] + 2 for a, b in itertools.pairwise(blocks))
    assert follows <= 2
    assert all(10000 <= p <= 20000 and p % 2 == 0 for b in blocks for p in b)
    assert len({p for b in blocks for p in b}) == 100


def test_default_randomness_is_the_systems() -> None:
    firsts = {PortPool(10000, 60000).allocate(1, now=0)[0] for _ in range(20)}
    assert len(firsts) > 1  # 20 draws from 25,001 slots: equal only by a bug


def test_a_nearly_full_pool_still_finds_its_last_block() -> None:
    ports = pool(10000, 10400)
    for _ in range(200):
        ports.allocate(1, now=0)
    assert ports.available(now=0) == 1
    [last] = ports.allocate(1, now=0)
    assert 10000 <= last <= 10400
    with pytest.raises(ServiceUnavailable):
        ports.allocate(1, now=0)


def test_released_ports_cool_down_before_reuse() -> None:
    ports = pool(20000, 20006, cooldown_s=5)
    first = ports.allocate(4, now=0)
    assert first == [20000, 20002, 20004, 20006]
    ports.release(first[:2], now=1)
    assert ports.available(now=5.9) == 0
    with pytest.raises(ServiceUnavailable):
        ports.allocate(1, now=5.9)
    assert ports.available(now=6.0) == 2
    assert ports.allocate(2, now=6.0) == [20000, 20002]


def test_block_needs_contiguous_free_ports() -> None:
    ports = pool(30000, 30010)
    taken = ports.allocate(6, now=0)
    ports.release([taken[1], taken[3], taken[4]], now=0)  # 30002, 30006, 30008 free
    assert ports.allocate(2, now=0) == [30006, 30008]
    with pytest.raises(ServiceUnavailable):
        ports.allocate(2, now=0)
    assert ports.allocate(1, now=0) == [30002]


def test_skip_avoids_ports_taken_by_other_processes() -> None:
    for seed in range(20):
        ports = pool(40000, 40006, seed=seed)
        assert ports.allocate(2, now=0, skip=frozenset({40002})) == [40004, 40006]


def test_growing_session_prefers_the_next_port() -> None:
    ports = pool(10000, 10010)
    ports.allocate(6, now=0)
    ports.release([10002, 10004, 10008], now=0)
    assert ports.allocate_near(10000, now=0) == 10002
    assert ports.allocate_near(10006, now=0) == 10008
    assert ports.allocate_near(10002, now=0) == 10004
    ports.release([10010], now=0)
    assert ports.allocate_near(10004, now=0) == 10010  # 10006 taken: any free one


def test_misuse_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        PortPool(10001, 10010)
    ports = PortPool(10000, 10010)
    with pytest.raises(UsageError):
        ports.release([10000], now=0)
    with pytest.raises(UsageError):
        ports.allocate(0, now=0)
    with pytest.raises(UsageError):
        ports.release([10001], now=0)
