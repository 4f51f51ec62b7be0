"""CPU stand-ins for CUDA memory and a TensorRT execution context, to test the TensorRT runtime's
buffer logic (ping-pong state, compaction, refill, copies back) without a GPU: device memory is numpy,
and the "engine" is the bundle's step graph in onnxruntime, reading and writing those buffers by address."""

from __future__ import annotations

import numpy as np

from trm_edge.runtimes.trt import CudaMemory, DeviceBuffer

DTYPES = {"inputs": np.int32}


class NumpyMemory(CudaMemory):
    stream = 12345

    def __init__(self, name: str = "Fake GPU", capability: str = "8.7") -> None:
        self.blocks: dict[int, np.ndarray] = {}
        self.name, self.capability = name, capability
        self.downloaded = 0  # bytes copied device -> host
        self.freed = 0

    def alloc(self, nbytes: int) -> DeviceBuffer:
        block = np.zeros(max(nbytes, 1), np.uint8)
        buffer = DeviceBuffer(block.ctypes.data, nbytes, block)
        self.blocks[buffer.ptr] = block
        return buffer

    def free(self, buffer: DeviceBuffer) -> None:
        del self.blocks[buffer.ptr]
        self.freed += 1

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        assert offset + data.size <= buffer.nbytes, "upload past the end of a buffer"
        buffer.handle[offset:offset + data.size] = data

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        assert array.flags.c_contiguous
        view = array.reshape(-1).view(np.uint8)
        assert offset + view.size <= buffer.nbytes, "download past the end of a buffer"
        view[:] = buffer.handle[offset:offset + view.size]
        self.downloaded += view.size

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        if dst is src:  # cudaMemcpy's contract: the ranges must not overlap
            assert dst_offset + nbytes <= src_offset or src_offset + nbytes <= dst_offset, "overlapping copy"
        assert dst_offset + nbytes <= dst.nbytes and src_offset + nbytes <= src.nbytes
        dst.handle[dst_offset:dst_offset + nbytes] = src.handle[src_offset:src_offset + nbytes]

    def zero(self, buffer: DeviceBuffer) -> None:
        buffer.handle[:] = 0

    def synchronize(self) -> None:
        pass

    def device_info(self) -> tuple[str, str]:
        return self.name, self.capability


class OrtContext:
    """An IExecutionContext look-alike: named shapes and addresses, execute_async_v3 runs onnxruntime."""

    def __init__(self, session, memory: NumpyMemory) -> None:
        self.session, self.memory = session, memory
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.inputs = [i.name for i in session.get_inputs()]
        self.outputs = [o.name for o in session.get_outputs()]
        self.runs: list[int] = []  # batch of each execution

    def set_input_shape(self, name: str, shape) -> bool:
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = int(ptr)
        return True

    def _view(self, name: str, shape) -> np.ndarray:
        block = self.memory.blocks[self.addresses[name]]
        dtype = DTYPES.get(name, np.float32)
        count = int(np.prod(shape))
        return block[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)

    def execute_async_v3(self, stream: int) -> bool:
        assert stream == self.memory.stream
        feeds = {n: self._view(n, self.shapes[n]).copy() for n in self.inputs}
        batch = self.shapes["inputs"][0]
        outs = self.session.run(self.outputs, feeds)
        for name, value in zip(self.outputs, outs, strict=True):
            assert value.shape[0] == batch
            self._view(name, value.shape)[...] = value
        self.runs.append(batch)
        return True
