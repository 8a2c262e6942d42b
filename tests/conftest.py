"""Suite-wide settings: one torch thread per test process.

CI runs two pytest workers on two cores; more threads per worker oversubscribes the cores and
makes small tensor operations hundreds of times slower.
"""

import torch

torch.set_num_threads(1)
