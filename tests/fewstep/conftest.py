import torch


def pytest_configure(config):  # keep the shared 2-core machine usable
    torch.set_num_threads(1)
