"""Per-request costs of moto 5.2.5's server mode that do not depend on the request, cached.

Why it exists: the lab must answer fast enough that a benchmark measures the agent, not the
lab. Profiled (pyinstrument, bench/lab_throughput.py), two moto functions that give the same
answer on every call took 40-45 % of the CPU of a GetItem or HeadObject:
- `moto.backends.list_of_moto_modules()` lists moto's package directory and stats every entry
  (≈ 170) on every request, only to check whether the Host header is a module name
  (DomainDispatcherApplication.get_backend_for_host);
- `moto.core.utils.method_names_from_class(cls)` runs `inspect.getmembers` over the response
  class on every call (BaseResponse.call_action), to check that the action has a method;
plus `MotoRandom.get_random_string` (every request id) drawing characters one `choice()` at a
time. Patched in memory like the lab's other moto changes (moto stays unmodified on disk); the
answers are the same (the module list and class methods do not change while the server runs,
the random strings come from the same seeded generator and alphabet).
"""

from __future__ import annotations

import functools
import string

import moto.backends
import moto.core.responses
import moto.core.utils
from moto.moto_api._internal.moto_random import MotoRandom

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True

    modules = frozenset(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    original = moto.core.utils.method_names_from_class

    @functools.lru_cache(maxsize=None)
    def method_names_from_class(clazz: object) -> frozenset[str]:
        return frozenset(original(clazz))

    # call_action looks it up as a global of moto.core.responses (imported by name there).
    moto.core.responses.method_names_from_class = method_names_from_class  # type: ignore[assignment]

    def get_random_string(self: MotoRandom, length: int = 20, include_digits: bool = True, lower_case: bool = False) -> str:
        pool = string.ascii_letters + (string.digits if include_digits else "")
        random_str = "".join(self.choices(pool, k=length))
        return random_str.lower() if lower_case else random_str

    MotoRandom.get_random_string = get_random_string  # type: ignore[method-assign]
