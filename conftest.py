"""pytest runs here; its environment passes to the notebook kernels that nbval starts.

The saved notebook outputs were produced single-threaded. CPU reductions split over another number
of threads round differently in the last bits, and a live training run can carry that into a
printed digit, so the replay uses one thread too.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
