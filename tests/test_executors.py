"""The local executor (mattlib.executors.LocalExecutor): RayExecutor's interface on this machine,
in worker processes (bulk extraction) or threads (grid cells)."""

import multiprocessing
import os
import threading

import pytest

from mattlib import executors
from mattlib.executors import LocalExecutor

_TAG = "parent"


def _set_tag(tag: str) -> None:
    """A worker initializer: marks the process it ran in."""
    global _TAG
    _TAG = tag


def _square_in_worker(x: int) -> tuple[int, int, str]:
    return x * x, os.getpid(), _TAG


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


@pytest.mark.parametrize("method", [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()])
def test_processes_return_every_result_from_initialised_workers(method):
    with LocalExecutor(
        2, mp_context=multiprocessing.get_context(method), initializer=_set_tag, initargs=("worker",)
    ) as ex:
        out = list(ex.map_unordered(_square_in_worker, range(7), resources=lambda x: {"num_cpus": 1}))
    assert sorted(v for v, _, _ in out) == [x * x for x in range(7)]  # every item once, in any order
    assert {tag for _, _, tag in out} == {"worker"} and os.getpid() not in {pid for _, pid, _ in out}


def test_an_exception_in_a_worker_process_reaches_the_caller():
    with (
        pytest.raises(ValueError, match="bad item 3"),
        LocalExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex,
    ):
        list(ex.map_unordered(_fail_on_three, range(6)))


def test_threads_yield_in_completion_order():
    release = threading.Event()  # item 0 finishes only after the caller has item 1

    def fn(x):
        if x == 0:
            assert release.wait(30)
        return x, threading.get_ident()

    out = []
    with LocalExecutor(max_workers=2, processes=False) as ex:
        for item in ex.map_unordered(fn, [0, 1]):
            out.append(item)
            release.set()
    assert [x for x, _ in out] == [1, 0]
    assert threading.get_ident() not in {t for _, t in out}


def test_an_exception_in_a_thread_reaches_the_caller_and_no_later_item_starts():
    started = []

    def fn(x):
        started.append(x)
        return _fail_on_three(x)

    with pytest.raises(ValueError, match="bad item 3"), LocalExecutor(1, processes=False) as ex:
        list(ex.map_unordered(fn, range(3, 20)))
    assert set(started) <= {3, 4}  # the first max_in_flight (2 x 1 worker) items only


def test_items_are_drawn_at_most_max_in_flight_ahead():
    drawn = []

    def items():
        for x in range(10):
            drawn.append(x)
            yield x

    with LocalExecutor(max_workers=2, processes=False) as ex:
        results = ex.map_unordered(lambda x: x, items(), max_in_flight=3)
        first = next(results)
        assert len(drawn) == 3 and first in drawn
        assert sorted([first, *results]) == list(range(10))


def test_use_needs_entering_and_arguments_are_checked():
    with pytest.raises(RuntimeError, match="must be entered"):
        next(LocalExecutor(1, processes=False).map_unordered(abs, [1]))
    with pytest.raises(ValueError, match="max_workers must be an int >= 1"):
        LocalExecutor(0)
    with pytest.raises(ValueError, match="mp_context starts worker processes"):
        LocalExecutor(1, processes=False, mp_context=multiprocessing.get_context("spawn"))
    assert LocalExecutor().max_workers >= 1


def test_open_executor_local_is_a_local_executor():
    with executors.open_executor("local") as ex:
        assert isinstance(ex, LocalExecutor)
        assert sorted(ex.map_unordered(abs, [-2, 1, -3])) == [1, 2, 3]
