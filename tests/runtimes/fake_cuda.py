"""CPU stand-ins for CUDA memory and a TensorRT execution context, to test the TensorRT runtime's
buffer logic (ping-pong state, compaction, refill, copies back) without a GPU: device memory is numpy,
and the "engine" is the bundle's step graph in onnxruntime, reading and writing those buffers by address.

They are as strict as the real things where the runtime could go wrong: work is queued on the stream and
lands only at ``synchronize`` (a download read too early holds stale bytes), copies must not overlap,
input shapes must lie in the engine's optimization profile, outputs must not alias inputs, every
allocation is tracked so leaks show, and a CUDA graph replays exactly the work captured (addresses included)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trm_edge.runtimes.cuda import CudaMemory, DeviceBuffer, GpuInfo

DTYPES = {"inputs": np.int32}
TOTAL_MEMORY = 8 << 30


class AllocationFailed(RuntimeError):
    pass


class NumpyMemory(CudaMemory):
    stream = 12345

    def __init__(self, gpu: GpuInfo | None = None, *, fail_after: int | None = None,
                 capture_fails: bool = False) -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.capture_fails = capture_fails
        self.captured: list[list] = []  # graphs captured and not released
        self.replays = 0
        self.gpu = gpu or GpuInfo("Fake GPU", "8.7", 8, 8)
        self.fail_after = fail_after  # allocations that succeed before one fails (None: never)
        self.pending: list[Callable[[], None]] = []
        self.downloaded = 0  # bytes copied device -> host
        self.freed = 0
        self.closed = False

    def alloc(self, nbytes: int) -> DeviceBuffer:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise AllocationFailed("out of device memory")
            self.fail_after -= 1
        block = np.zeros(max(nbytes, 1), np.uint8)
        block[:] = 0xAB  # like cudaMalloc: not zeroed
        buffer = DeviceBuffer(block.ctypes.data, nbytes, block)
        self.blocks[buffer.ptr] = block
        return buffer

    def free(self, buffer: DeviceBuffer) -> None:
        self.synchronize()  # cudaFree waits for the device
        del self.blocks[buffer.ptr]
        self.freed += 1

    def free_memory(self) -> int:
        return TOTAL_MEMORY - sum(b.size for b in self.blocks.values())

    def host_array(self, count: int, dtype) -> np.ndarray:
        return np.zeros(count, dtype)

    def _enqueue(self, work: Callable[[], None]) -> None:
        assert not self.closed, "work queued after close"
        self.pending.append(work)

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8).copy()
        assert offset + data.size <= buffer.nbytes, "upload past the end of a buffer"

        def work() -> None:
            buffer.handle[offset:offset + data.size] = data

        self._enqueue(work)
        self.synchronize()  # both real backends wait for uploads (the source may be a temporary)

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        assert array.flags.c_contiguous
        view = array.reshape(-1).view(np.uint8)
        assert offset + view.size <= buffer.nbytes, "download past the end of a buffer"

        def work() -> None:
            view[:] = buffer.handle[offset:offset + view.size]

        self._enqueue(work)
        self.downloaded += view.size

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        if dst is src:  # cudaMemcpy's contract: the ranges must not overlap
            assert dst_offset + nbytes <= src_offset or src_offset + nbytes <= dst_offset, "overlapping copy"
        assert dst_offset + nbytes <= dst.nbytes and src_offset + nbytes <= src.nbytes

        def work() -> None:
            dst.handle[dst_offset:dst_offset + nbytes] = src.handle[src_offset:src_offset + nbytes]

        self._enqueue(work)

    def zero(self, buffer: DeviceBuffer) -> None:
        self._enqueue(lambda: buffer.handle.fill(0))

    def synchronize(self) -> None:
        work, self.pending = self.pending, []
        for item in work:
            item()

    def capture(self, work: Callable[[], None]) -> list:
        """Stream capture: what ``work`` queues is recorded (with the addresses and shapes of that moment, as a
        CUDA graph bakes them in) and not run."""
        assert not self.pending, "capture on a stream with work in flight"
        work()
        graph, self.pending = self.pending, []
        if self.capture_fails:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captured.append(graph)
        return graph

    def replay(self, graph: list) -> None:
        assert any(g is graph for g in self.captured), "replay of a released graph"
        self.pending.extend(graph)
        self.replays += 1

    def release(self, graph: list) -> None:
        self.captured = [g for g in self.captured if g is not graph]

    def gpu_info(self) -> GpuInfo:
        return self.gpu

    def close(self) -> None:
        self.synchronize()
        self.closed = True


class OrtContext:
    """An IExecutionContext look-alike: named shapes and addresses, execute_async_v3 queues onnxruntime on
    the stream. ``profile`` is the (min, max) batch of the engine's optimization profile."""

    def __init__(self, session, memory: NumpyMemory, *, profile: tuple[int, int] = (1, 1 << 30)) -> None:
        self.session, self.memory, self.profile = session, memory, profile
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.inputs = {i.name: i.shape for i in session.get_inputs()}
        self.outputs = [o.name for o in session.get_outputs()]
        self.runs: list[int] = []  # batch of each execution
        self.reject_addresses = False

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(shape)
        if name not in self.inputs or len(shape) != len(self.inputs[name]):
            return False
        static = list(self.inputs[name][1:])
        if any(isinstance(d, int) and d != s for d, s in zip(static, shape[1:])):  # noqa: B905
            return False
        if not self.profile[0] <= shape[0] <= self.profile[1]:
            return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        if self.reject_addresses or (name not in self.inputs and name not in self.outputs):
            return False
        self.addresses[name] = int(ptr)
        return True

    def _span(self, name: str, shape) -> tuple[int, int]:
        dtype = DTYPES.get(name, np.float32)
        return self.addresses[name], self.addresses[name] + int(np.prod(shape)) * np.dtype(dtype).itemsize

    def _view(self, name: str, shape) -> np.ndarray:
        block = self.memory.blocks[self.addresses[name]]
        dtype = DTYPES.get(name, np.float32)
        count = int(np.prod(shape))
        return block[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        assert stream == self.memory.stream
        assert set(self.shapes) == set(self.inputs), "every input shape must be set"
        batch = self.shapes["inputs"][0]
        shapes = dict(self.shapes)
        out_shapes = dict(zip(self.outputs, (o.shape for o in self.session.get_outputs())))  # noqa: B905
        spans = {n: self._span(n, s) for n, s in shapes.items()}
        for name in self.outputs:
            assert name in self.addresses, f"output {name!r} has no address"
            lo, hi = self._span(name, [batch, *[d for d in out_shapes[name][1:] if isinstance(d, int)]])
            for other, (a, b) in spans.items():
                assert hi <= a or b <= lo, f"output {name!r} aliases input {other!r}"
        addresses = dict(self.addresses)

        def work() -> None:
            saved, self.addresses = self.addresses, addresses
            try:
                feeds = {n: self._view(n, shapes[n]).copy() for n in self.inputs}
                outs = self.session.run(self.outputs, feeds)
                for name, value in zip(self.outputs, outs):  # noqa: B905
                    assert value.shape[0] == batch
                    self._view(name, value.shape)[...] = value
            finally:
                self.addresses = saved
            self.runs.append(batch)

        self.memory._enqueue(work)
        return True
