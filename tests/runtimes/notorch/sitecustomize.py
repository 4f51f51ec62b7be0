"""Put on PYTHONPATH to make the host side's packages unimportable (``import torch`` raises ImportError), as in
a device-only install (``pip install trm-edge``, without the ``host`` extra): the device side of trm-edge must
need none of them."""

import sys

for name in ("torch", "onnx", "onnxslim", "safetensors", "matplotlib"):  # trm_edge.errors.HOST_PACKAGES
    sys.modules[name] = None
