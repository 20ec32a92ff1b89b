"""pytest runs here; its environment passes to the notebook kernels that nbval starts.

The saved notebook outputs were executed with one thread, and the replay uses one thread unless
OMP_NUM_THREADS says otherwise. Either way they replay: figures whose last digits depend on the CPU
or the thread count are checked with measured tolerances, not compared as text (ldm_course/course/replay.py;
scripts/course/replay_settings.sh replays under several instruction sets and thread counts).
"""

import os

# live numbers of cells with `replay` metadata compared within their tolerance (docs/NOTEBOOK_GUIDE.md)
pytest_plugins = ["ldm_course.course.nbval_tolerance"]

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
# The saved outputs were executed offline (scripts/course/execute_notebooks.sh): notebook 03's cell
# that loads Stable Diffusion's VAE from the Hub shows its one offline line, on every machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
