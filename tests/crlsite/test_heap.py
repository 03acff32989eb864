"""A web process freezes its start-up heap out of the garbage collector's full passes."""
import gc
import os
import subprocess
import sys

from crlsite.heap import freeze_loaded_heap


def test_the_wsgi_application_freezes_what_it_loaded():
    child = "import gc, crlsite.wsgi; print(gc.get_freeze_count())"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "crlsite.settings"}
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) > 10_000  # Django, DRF, NumPy... not walked by full passes


def test_freezing_leaves_new_objects_collectable():
    try:
        frozen = freeze_loaded_heap()
        # frozen objects freed since (another thread of the test process may drop one) only lower the count
        assert 0 < gc.get_freeze_count() <= frozen and frozen > 10_000
        cycle = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # a cycle made after the freeze is still found
    finally:
        gc.unfreeze()
