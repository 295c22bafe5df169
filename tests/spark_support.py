"""The Spark Thrift server a test run was given (scripts/with_spark.sh), for the tests marked spark.

``scripts/with_spark.sh`` exports ``CXDASH_ANALYTICS_URL``, which tests/conftest.py moves to
``CXDASH_SPARK_TEST_URL``. Under ``make test`` the server starts in the background while the other
tests run (``CXDASH_SPARK_BACKGROUND``): ``spark_url()`` waits until it answers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

SPARK_URL = os.environ.get("CXDASH_SPARK_TEST_URL", "")
START_WAIT_S = float(os.environ.get("CXDASH_SPARK_START_TIMEOUT", "180")) + 30


def spark_url() -> str:
    """The server's URL once it answers queries. Skips when the run has no Spark server (no Java,
    or not under with_spark.sh); fails when the server was started and did not come up."""
    if not SPARK_URL.startswith("sparkthrift://"):
        pytest.skip("no Spark Thrift server (run under scripts/with_spark.sh: make test, make test-spark)")
    ready = os.environ.get("CXDASH_SPARK_READY_FILE")
    if ready:
        path = Path(ready)
        deadline = time.monotonic() + START_WAIT_S
        while not path.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"the Spark Thrift server did not report ready within {START_WAIT_S:.0f} s")
            time.sleep(0.5)
        state = path.read_text().strip()
        if state != "ready":
            pytest.fail(f"the Spark Thrift server did not start ({state}); with_spark.sh printed its log")
    return SPARK_URL
