"""Device memory for the TensorRT runtime: cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` in
older releases), or torch when it happens to be installed; never pycuda.

Every operation is queued on the backend's one stream, so copies are ordered with the engine's kernels;
nothing on the host may read a download, or reuse an upload's source, before ``synchronize``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from trm_edge.errors import RuntimeUnavailableError


@dataclass(frozen=True)
class GpuInfo:
    """What identifies a GPU model for engine compatibility: TensorRT tunes kernels to all of these
    (Orin modules share a name and compute capability but differ in SM count and memory)."""

    name: str
    compute_capability: str  # "8.7"
    multiprocessors: int
    memory_gib: int  # total device memory, rounded to whole GiB


class DeviceBuffer:
    """A block of device memory; ``ptr`` is what TensorRT's ``set_tensor_address`` takes."""

    def __init__(self, ptr: int, nbytes: int, handle: Any = None) -> None:
        self.ptr = int(ptr)
        self.nbytes = nbytes
        self.handle = handle  # backend object keeping the memory alive (a torch tensor), if any


class CudaMemory:
    """The few CUDA operations the runtime needs, all on one stream: alloc, page-locked host arrays,
    host<->device and device->device copies, memset, synchronise."""

    stream: int

    def alloc(self, nbytes: int) -> DeviceBuffer: raise NotImplementedError
    def free(self, buffer: DeviceBuffer) -> None: raise NotImplementedError
    def host_array(self, count: int, dtype: Any) -> np.ndarray:
        """A page-locked host array (asynchronous downloads land in it); freed by ``close``."""
        raise NotImplementedError
    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None: raise NotImplementedError
    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None: raise NotImplementedError
    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        raise NotImplementedError
    def zero(self, buffer: DeviceBuffer) -> None: raise NotImplementedError
    def synchronize(self) -> None: raise NotImplementedError
    def capture(self, work: Callable[[], None]) -> Any:
        """Record what ``work`` queues on the stream as a CUDA graph, without running it."""
        raise NotImplementedError
    def replay(self, graph: Any) -> None:
        """Queue a captured graph on the stream (one launch instead of one per kernel)."""
        raise NotImplementedError
    def release(self, graph: Any) -> None: raise NotImplementedError
    def gpu_info(self) -> GpuInfo: raise NotImplementedError
    def free_memory(self) -> int:
        """Free device memory in bytes, as the driver reports it."""
        raise NotImplementedError
    def close(self) -> None: pass


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python (11.x on JetPack 5)
        except ImportError:
            return None
    return cudart


class CudaPythonMemory(CudaMemory):
    """cuda-python's runtime API, on GPU ``device``."""

    def __init__(self, device: int = 0) -> None:
        cudart = import_cudart()
        if cudart is None:
            raise RuntimeUnavailableError("cuda-python is not installed: pip install cuda-python (its major "
                                          "version must match the device's CUDA: 11.x on JetPack 5, 12.x on 6)")
        self.rt = cudart
        self._pinned: list[int] = []
        err, count = cudart.cudaGetDeviceCount()
        if err == cudart.cudaError_t.cudaErrorNoDevice or (err == cudart.cudaError_t.cudaSuccess and count == 0):
            raise RuntimeUnavailableError("the tensorrt runtime needs an NVIDIA GPU and none is visible here; "
                                          "use --runtime onnxruntime")
        self._check(err, "cudaGetDeviceCount")
        check_device_index(device, count)
        self.device = device
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream = int(self._stream)

    def error_name(self, err: Any) -> str:
        result = self.rt.cudaGetErrorName(err)
        name = result[1] if isinstance(result, tuple) else result
        return name.decode() if isinstance(name, bytes) else str(name)

    def _check(self, result: Any, call: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeUnavailableError(f"CUDA error {self.error_name(err)} in {call}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        return DeviceBuffer(int(self._check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc")), nbytes)

    def free(self, buffer: DeviceBuffer) -> None:
        self._check(self.rt.cudaFree(buffer.ptr), "cudaFree")

    def host_array(self, count: int, dtype: Any) -> np.ndarray:
        nbytes = max(count * np.dtype(dtype).itemsize, 1)
        ptr = int(self._check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._pinned.append(ptr)
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return raw[: count * np.dtype(dtype).itemsize].view(dtype)

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buffer.ptr + offset, array.ctypes.data, array.nbytes, kind,
                                            self._stream), "cudaMemcpyAsync")
        self.synchronize()  # ``array`` may be a temporary: keep it alive until the copy is done

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(array.ctypes.data, buffer.ptr + offset, array.nbytes, kind,
                                            self._stream), "cudaMemcpyAsync")

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr + dst_offset, src.ptr + src_offset, nbytes, kind,
                                            self._stream), "cudaMemcpyAsync")

    def zero(self, buffer: DeviceBuffer) -> None:
        self._check(self.rt.cudaMemsetAsync(buffer.ptr, 0, buffer.nbytes, self._stream), "cudaMemsetAsync")

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture(self, work: Callable[[], None]) -> Any:
        rt = self.rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal  # TensorRT may allocate while enqueuing
        self._check(rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            work()
        finally:
            graph = self._check(rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        try:  # cudaGraphInstantiateWithFlags: the same signature in CUDA 11.4+ and 12 (cudaGraphInstantiate is not)
            return self._check(rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        finally:
            self._check(rt.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def replay(self, graph: Any) -> None:
        self._check(self.rt.cudaGraphLaunch(graph, self._stream), "cudaGraphLaunch")

    def release(self, graph: Any) -> None:
        self._check(self.rt.cudaGraphExecDestroy(graph), "cudaGraphExecDestroy")

    def gpu_info(self) -> GpuInfo:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(name.rstrip("\x00").strip(), f"{props.major}.{props.minor}", int(props.multiProcessorCount),
                       round(int(props.totalGlobalMem) / 2**30))

    def free_memory(self) -> int:
        free, _total = self._check(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free)

    def close(self) -> None:
        self.synchronize()
        while self._pinned:
            self._check(self.rt.cudaFreeHost(self._pinned.pop()), "cudaFreeHost")
        self._check(self.rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")


class TorchCudaMemory(CudaMemory):
    """torch's caching allocator and copies on a torch stream (when torch with CUDA is installed).
    Buffers are allocated and zeroed on that stream, so no fill on the default stream can land after
    a later copy."""

    def __init__(self, device: int = 0) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailableError("the tensorrt runtime needs an NVIDIA GPU and torch sees none here; "
                                          "use --runtime onnxruntime")
        check_device_index(device, torch.cuda.device_count())
        self.torch = torch
        self.device = torch.device("cuda", device)
        self._stream = torch.cuda.Stream(device=self.device)
        self.stream = int(self._stream.cuda_stream)
        self._pinned: list[Any] = []

    def alloc(self, nbytes: int) -> DeviceBuffer:
        with self.torch.cuda.stream(self._stream):  # the caching allocator ties the block to this stream
            tensor = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device=self.device)
        return DeviceBuffer(tensor.data_ptr(), nbytes, tensor)

    def free(self, buffer: DeviceBuffer) -> None:
        buffer.handle = None

    def host_array(self, count: int, dtype: Any) -> np.ndarray:
        nbytes = count * np.dtype(dtype).itemsize
        tensor = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, pin_memory=True)
        self._pinned.append(tensor)
        return tensor.numpy()[:nbytes].view(dtype)

    def _bytes(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array).reshape(-1).view(np.uint8))

    def upload(self, buffer: DeviceBuffer, offset: int, array: np.ndarray) -> None:
        with self.torch.cuda.stream(self._stream):
            buffer.handle[offset:offset + array.nbytes].copy_(self._bytes(array))
        self.synchronize()

    def download(self, array: np.ndarray, buffer: DeviceBuffer, offset: int) -> None:
        with self.torch.cuda.stream(self._stream):
            self._bytes(array).copy_(buffer.handle[offset:offset + array.nbytes], non_blocking=True)

    def copy(self, dst: DeviceBuffer, dst_offset: int, src: DeviceBuffer, src_offset: int, nbytes: int) -> None:
        with self.torch.cuda.stream(self._stream):
            dst.handle[dst_offset:dst_offset + nbytes].copy_(src.handle[src_offset:src_offset + nbytes])

    def zero(self, buffer: DeviceBuffer) -> None:
        with self.torch.cuda.stream(self._stream):
            buffer.handle.zero_()

    def synchronize(self) -> None:
        self._stream.synchronize()

    def capture(self, work: Callable[[], None]) -> Any:
        graph = self.torch.cuda.CUDAGraph()
        with self.torch.cuda.graph(graph, stream=self._stream, capture_error_mode="thread_local"):
            work()
        return graph

    def replay(self, graph: Any) -> None:
        with self.torch.cuda.stream(self._stream):
            graph.replay()

    def release(self, graph: Any) -> None:
        graph.reset()

    def gpu_info(self) -> GpuInfo:
        props = self.torch.cuda.get_device_properties(self.device)
        return GpuInfo(props.name, f"{props.major}.{props.minor}", int(props.multi_processor_count),
                       round(int(props.total_memory) / 2**30))

    def free_memory(self) -> int:
        return int(self.torch.cuda.mem_get_info(self.device)[0])

    def close(self) -> None:
        self.synchronize()
        self._pinned.clear()


def check_device_index(device: int, count: int) -> None:
    if not 0 <= device < count:
        raise RuntimeUnavailableError(f"GPU {device} does not exist: this machine has {count} "
                                      f"(choices: {', '.join(map(str, range(count))) or 'none'})")


def parse_device_index(device: str | None) -> int:
    """``tensorrt:N`` -> N (the CUDA device index); ``tensorrt`` -> 0."""
    if device is None or device in ("", "cuda"):
        return 0
    index = device[len("cuda:"):] if device.startswith("cuda:") else device
    if not index.isdigit():
        raise RuntimeUnavailableError(f"tensorrt device {device!r} is not a GPU index; use tensorrt:0, tensorrt:1, ...")
    return int(index)


def cuda_memory(device: int = 0) -> CudaMemory:
    """cuda-python when installed, else torch; RuntimeUnavailableError naming what to install."""
    if import_cudart() is not None:
        return CudaPythonMemory(device)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise RuntimeUnavailableError("the tensorrt runtime needs cuda-python for device memory "
                                      "(pip install cuda-python), or torch with CUDA") from None
    return TorchCudaMemory(device)
