"""Put on PYTHONPATH to make torch unimportable (``import torch`` raises ImportError): the device-side
path of trm-edge must not need it."""

import sys

sys.modules["torch"] = None
