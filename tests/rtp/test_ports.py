import pytest

from srs.errors import ServiceUnavailable, UsageError
from srs.rtp.ports import PortPool


def test_blocks_of_consecutive_even_ports_round_robin() -> None:
    pool = PortPool(10000, 10010, cooldown_s=5)
    assert pool.capacity == 6
    assert pool.allocate(2, now=0) == [10000, 10002]
    assert pool.allocate(3, now=0) == [10004, 10006, 10008]
    assert pool.allocate(1, now=0) == [10010]
    assert pool.in_use == 6
    with pytest.raises(ServiceUnavailable) as info:
        pool.allocate(1, now=0)
    assert info.value.status == 503 and info.value.retry_after_s == 10


def test_released_ports_cool_down_before_reuse() -> None:
    pool = PortPool(20000, 20006, cooldown_s=5)
    first = pool.allocate(4, now=0)
    pool.release(first[:2], now=1)
    assert pool.available(now=5.9) == 0
    with pytest.raises(ServiceUnavailable):
        pool.allocate(1, now=5.9)
    assert pool.available(now=6.0) == 2
    assert pool.allocate(2, now=6.0) == [20000, 20002]


def test_block_needs_contiguous_free_ports() -> None:
    pool = PortPool(30000, 30010, cooldown_s=0)
    ports = pool.allocate(6, now=0)
    pool.release([ports[1], ports[3], ports[4]], now=0)  # 30002, 30006, 30008 free
    assert pool.allocate(2, now=0) == [30006, 30008]
    with pytest.raises(ServiceUnavailable):
        pool.allocate(2, now=0)
    assert pool.allocate(1, now=0) == [30002]


def test_skip_avoids_ports_taken_by_other_processes() -> None:
    pool = PortPool(40000, 40006, cooldown_s=0)
    assert pool.allocate(2, now=0, skip=frozenset({40002})) == [40004, 40006]


def test_growing_session_prefers_the_next_port() -> None:
    pool = PortPool(10000, 10010, cooldown_s=0)
    block = pool.allocate(2, now=0)
    assert pool.allocate_near(block[-1], now=0) == 10004
    pool.allocate(1, now=0)  # 10006
    assert pool.allocate_near(10004, now=0) == 10008  # 10006 taken: any free one


def test_misuse_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        PortPool(10001, 10010)
    pool = PortPool(10000, 10010)
    with pytest.raises(UsageError):
        pool.release([10000], now=0)
    with pytest.raises(UsageError):
        pool.allocate(0, now=0)
    with pytest.raises(UsageError):
        pool.release([10001], now=0)
