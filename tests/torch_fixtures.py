"""pytest fixtures shared by the tests that run PyTorch (import them into a test module)."""
import pytest
import torch

__all__ = ["ENGINES", "engine", "one_torch_thread"]

#: PyTorch's quantized CPU engines available here.
ENGINES = [e for e in ("fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines]


@pytest.fixture(params=ENGINES or [pytest.param(None, marks=pytest.mark.skip(
    reason="PyTorch has neither the fbgemm nor the qnnpack quantized engine"))])
def engine(request):
    """Select the PyTorch quantized engine for one test and restore the previous one afterwards."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = previous


@pytest.fixture(scope="module")
def one_torch_thread():
    """These layers are tiny: one intra-op thread is fastest and immune to a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
