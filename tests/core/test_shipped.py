"""The workloads the harness starts as processes are named by module; a file name is refused at once (the vendor
gateway's upstream and fake vendors were started as ``clauseproof.workloads.model_vendors.py``, which died with
"No module named" and showed only as every gateway case in ERROR)."""

from __future__ import annotations

import pytest

from clauseproof.core import shipped


def test_a_workload_is_named_by_its_module() -> None:
    assert shipped.workload_module("model_vendors") == "clauseproof.workloads.model_vendors"
    for wrong in ("model_vendors.py", "no_such_workload", "../x"):
        with pytest.raises(ValueError, match=r"without \.py"):
            shipped.workload_module(wrong)
