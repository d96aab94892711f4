"""pytest fixtures shared by the tests that run PyTorch (import them into a test module)."""
import pytest
import torch

from stamen.sw.frontend.torch_ref import ENGINES as _REF_ENGINES

__all__ = ["ENGINES", "engine", "one_torch_thread"]

#: PyTorch's quantized CPU engines available here (qnnpack first: the reference engine).
ENGINES = [e for e in _REF_ENGINES if e in torch.backends.quantized.supported_engines]


@pytest.fixture(params=ENGINES or [pytest.param(None, marks=pytest.mark.skip(
    reason="PyTorch has neither the qnnpack nor the fbgemm quantized engine"))])
def engine(request):
    """The name of a PyTorch quantized engine. Tests pass it to ``stamen.sw.frontend.torch_ref`` (or run
    under ``torch_ref.quantized_engine``), which sets it for the call and restores the previous
    one: no test depends on the machine's default engine. ``"fbgemm"`` is used only with
    reduced-range activations (exact on every x86 CPU); see ``stamen.sw.frontend.torch_ref``."""
    return request.param


@pytest.fixture(scope="module")
def one_torch_thread():
    """These layers are tiny: one intra-op thread is fastest and immune to a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
