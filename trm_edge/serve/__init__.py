"""``trm-edge serve``: the solver as an HTTP service on the device (docs/serving.md).

scheduler.py runs the one recursion core over a queue that requests fill (continuous batching across requests, step
by step); work.py reads requests as ``trm-edge solve`` reads puzzles; app.py is the HTTP API; metrics.py its
Prometheus metrics; server.py puts them together under uvicorn."""
