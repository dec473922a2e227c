"""Read network pickles without executing anything from them.

Python's pickle format can call any importable function while loading. The unpicklers here
resolve only an explicit allow-list of globals, each mapped to a small local stand-in that builds
plain data (dicts, numpy arrays, torch tensors); any other global is refused by ``find_class``
before it could be called. Embedded source code (NVIDIA's ``module_src``, TensorFlow's
``build_module_src``) is kept as an inert string and never run.

Nothing in this module knows about StyleGAN2 layer names; the ``formats`` package does the conversion.
"""

from __future__ import annotations

import collections
import collections.abc
import io
import os
import pickle
import pickletools
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct_impl
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct_impl


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle is malformed or does something a checkpoint never does."""


class RefusedGlobal(UnsafePickleError):
    """The pickle references a global that is not on the allow-list."""

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name
        self.qualname = f"{module}.{name}"
        super().__init__(f"refusing to load global '{self.qualname}'")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the ``(module, name)`` pairs in ``allowed``."""

    def __init__(self, file, allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Optional[Callable[[Any], Any]] = None):
        super().__init__(file)
        self._allowed = allowed
        self._persistent_load = persistent_load

    def find_class(self, module, name):  # noqa: D401 - pickle API
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise RefusedGlobal(str(module), str(name)) from None

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise UnsafePickleError("unexpected persistent reference in pickle")
        return self._persistent_load(pid)


def restricted_load(file, allowed: Mapping[tuple[str, str], Any], persistent_load=None) -> Any:
    """Unpickle one object from ``file`` (seekable) after :func:`check_memo_indices` has vetted its opcodes."""
    start = file.tell()
    check_memo_indices(file)
    file.seek(start)
    return RestrictedUnpickler(file, allowed, persistent_load).load()


_MEMO_STORES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def check_memo_indices(file) -> None:
    """Refuse a pickle whose memo indices run ahead of the stream: Python's unpickler grows its memo table to
    twice the largest index, so one ``LONG_BINPUT 2**31`` in a 10-byte file would take gigabytes.

    Picklers number memo entries 0, 1, 2, ... (one per stored value, each at least one opcode), so an
    index may not exceed the count of opcodes before it; that bounds the table by the file's size.
    The scan (:func:`pickletools.genops`, nothing executed) reads up to the pickle's STOP; lengths
    beyond the end of the file raise ValueError.
    """
    for count, (opcode, arg, _pos) in enumerate(pickletools.genops(CappedReader(file))):
        if opcode.name in _MEMO_STORES and not (isinstance(arg, int) and 0 <= arg <= count):
            raise UnsafePickleError(f"memo index {arg!r:.20} out of sequence (at opcode {count})")


class CappedReader:
    """File wrapper whose reads never ask for more than what is left (corrupt lengths can be huge)."""

    def __init__(self, file):
        self._file = file
        try:
            self._left = os.fstat(file.fileno()).st_size - file.tell()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._left = None

    def read(self, n=-1):
        if self._left is not None and (n is None or n < 0 or n > self._left):
            n = self._left
        data = self._file.read(n)
        if self._left is not None:
            self._left -= len(data)
        return data

    def readline(self):
        line = self._file.readline()
        if self._left is not None:
            self._left -= len(line)
        return line


# --------------------------------------------------------------------------------------------
# numpy values (TF variables, NVIDIA's numpy float64 attributes).

class _NdarrayClass:
    """What the global ``numpy.ndarray`` resolves to: a token ``_reconstruct`` accepts, never callable.

    numpy pickles arrays as ``_reconstruct(ndarray, (0,), b"b")`` plus a state holding the bytes;
    calling ``ndarray(shape, dtype, buffer, offset, strides)`` itself could view one byte as a
    20000×20000 array (stride 0), so that is refused.
    """

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("a checkpoint never constructs numpy arrays directly (numpy.ndarray called)")

    def __repr__(self):
        return "numpy.ndarray (restricted)"


NDARRAY = _NdarrayClass()


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not NDARRAY:
        raise UnsafePickleError(f"numpy array of unexpected type {subtype!r:.80}")
    if not (isinstance(shape, (tuple, list)) and tuple(shape) == (0,)):
        raise UnsafePickleError(f"unexpected numpy array prototype shape {shape!r:.80}")  # numpy writes (0,)
    return _np_reconstruct_impl(np.ndarray, (0,), dtype)


def _np_dtype(spec, *args):
    if not isinstance(spec, str):
        raise UnsafePickleError(f"unexpected numpy dtype specification {spec!r:.80}")
    dtype = np.dtype(spec, *args)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object arrays are not allowed in a checkpoint")
    if dtype.subdtype is not None or dtype.fields is not None:
        raise UnsafePickleError(f"numpy dtype {spec!r:.40} is not a plain number type")
    return dtype


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafePickleError("unexpected numpy scalar encoding")
    if len(data) != dtype.itemsize:
        raise UnsafePickleError("numpy scalar with a wrong number of bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): NDARRAY,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_mod, "scalar")] = _np_scalar
    NUMPY_GLOBALS[(_mod, "_reconstruct")] = _np_reconstruct

def _codecs_encode(text, encoding="utf-8"):
    """Protocol 2 writes bytes objects as ``_codecs.encode(str, 'latin1')``; allow only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("unexpected use of _codecs.encode")
    return text.encode("latin-1")


# Protocol 2/3 spell the builtins module '__builtin__' or 'builtins'; find_class sees it raw.
BUILTIN_GLOBALS: dict[tuple[str, str], Any] = {("_codecs", "encode"): _codecs_encode}
for _mod in ("builtins", "__builtin__"):
    BUILTIN_GLOBALS[(_mod, "set")] = set
    BUILTIN_GLOBALS[(_mod, "frozenset")] = frozenset


class EasyDict(dict):
    """Inert stand-in for ``dnnlib.util.EasyDict`` (a dict subclass)."""


# --------------------------------------------------------------------------------------------
# torch storages and tensors, as written by plain pickle.dump of nn.Modules.

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class StorageType:
    """Stand-in for a ``torch.*Storage`` class inside a legacy storage blob: just a dtype."""

    def __init__(self, name: str, dtype: torch.dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return f"StorageType({self.name})"


_STORAGE_GLOBALS: dict[tuple[str, str], Any] = {}
for _name, _dtype in STORAGE_DTYPES.items():
    for _mod in ("torch", "torch.cuda"):
        _STORAGE_GLOBALS[(_mod, _name)] = StorageType(_name, _dtype)


class Storage:
    """A flat, CPU, 1-D tensor standing in for a torch storage."""

    __slots__ = ("data",)

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __setstate__(self, state):
        raise UnsafePickleError("unexpected state for a storage")


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def parse_legacy_storage(blob: bytes) -> Storage:
    """Parse the bytes of ``torch.storage._load_from_bytes`` without calling ``torch.load``.

    The blob is a legacy (non-zip) ``torch.save`` stream of one storage: five small protocol-2
    pickles (magic, protocol version, sys info, a persistent reference to the storage, the list
    of storage keys), then per key an 8-byte little-endian element count and the raw data.
    """
    if not isinstance(blob, (bytes, bytearray)):
        raise UnsafePickleError("storage payload is not bytes")
    f = io.BytesIO(blob)
    try:
        magic = restricted_load(f, {})
        if magic != LEGACY_MAGIC:
            raise UnsafePickleError("storage payload is not a torch storage (bad magic number)")
        version = restricted_load(f, {})
        if version != LEGACY_PROTOCOL:
            raise UnsafePickleError(f"unsupported torch storage protocol {version!r}")
        sys_info = restricted_load(f, {})
        if not isinstance(sys_info, dict):
            raise UnsafePickleError("malformed torch storage header")
        little_endian = bool(sys_info.get("little_endian", True))

        records: dict[str, tuple[StorageType, int]] = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
                raise UnsafePickleError(f"unexpected persistent reference {pid!r:.80}")
            _, stype, key, _location, numel, view = pid
            if not isinstance(stype, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
                raise UnsafePickleError("malformed storage reference")
            records.setdefault(key, (stype, numel))
            if view is None:
                return ("root", key)
            if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
                raise UnsafePickleError("malformed storage view")
            return ("view", key, view[1], view[2])

        ref = restricted_load(f, _STORAGE_GLOBALS, persistent_load)
        keys = restricted_load(f, {})
    except RefusedGlobal:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise UnsafePickleError(f"corrupt torch storage payload ({e})") from None
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise UnsafePickleError("malformed storage key list")

    data: dict[str, torch.Tensor] = {}
    for key in keys:
        if key not in records:
            raise UnsafePickleError("storage key list does not match the storage reference")
        stype, numel = records[key]
        head = f.read(8)
        if len(head) != 8:
            raise UnsafePickleError("torch storage payload is truncated")
        count = int.from_bytes(head, "little", signed=True)
        itemsize = _element_size(stype.dtype)
        if count < 0 or count != numel:
            raise UnsafePickleError(f"storage size mismatch ({count} vs {numel} elements)")
        raw = f.read(count * itemsize)
        if len(raw) != count * itemsize:
            raise UnsafePickleError("torch storage payload is truncated")
        if count == 0:
            t = torch.empty(0, dtype=stype.dtype)
        else:
            buf = bytearray(raw)
            if not little_endian and itemsize > 1:
                arr = np.frombuffer(buf, dtype=np.uint8).reshape(count, itemsize)[:, ::-1]
                buf = bytearray(arr.tobytes())
            t = torch.frombuffer(buf, dtype=stype.dtype)
        data[key] = t

    if not isinstance(ref, tuple) or ref[1] not in data:
        raise UnsafePickleError("storage payload references no stored data")
    root = data[ref[1]]
    if ref[0] == "view":
        _, _, offset, size = ref
        if offset < 0 or size < 0 or offset + size > root.numel():
            raise UnsafePickleError("storage view out of bounds")
        root = root[offset:offset + size]
    return Storage(root)


def _load_from_bytes(blob):
    return parse_legacy_storage(blob)


def _is_int_tuple(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, Storage):
        raise UnsafePickleError("tensor without a storage")
    if not (isinstance(storage_offset, int) and _is_int_tuple(size) and _is_int_tuple(stride)
            and len(size) == len(stride)):
        raise UnsafePickleError("malformed tensor layout")
    flat = storage.data
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise UnsafePickleError("negative tensor size, stride or offset")
    numel = 1
    for s in size:
        numel *= s
    if numel == 0:
        return torch.empty(tuple(size), dtype=flat.dtype)
    check_view(flat.numel(), storage_offset, size, stride, numel)
    return torch.as_strided(flat, tuple(size), tuple(stride), storage_offset)  # a view: nothing is copied here


def check_view(storage_numel: int, offset: int, size, stride, numel: int) -> None:
    """Refuse a tensor view that reaches past its storage, or that shows more elements than the storage
    holds (stride 0 or overlapping strides: 4 bytes shown as [32768, 32768])."""
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if last >= storage_numel:
        raise UnsafePickleError("tensor extends past the end of its storage")
    if numel > storage_numel:
        raise UnsafePickleError(f"tensor of {numel} elements is a view of a storage of {storage_numel} "
                                f"(stride-0 or overlapping strides)")


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    t = _rebuild_tensor(storage, storage_offset, size, stride)
    if isinstance(dtype, torch.dtype) and dtype != t.dtype:
        raise UnsafePickleError(f"tensor dtype {dtype} does not match its storage ({t.dtype})")
    return t


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("parameter without tensor data")
    return data


_TORCH_DTYPE_GLOBALS = {
    ("torch", name): getattr(torch, name)
    for name in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
}

TORCH_TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    **_TORCH_DTYPE_GLOBALS,
}


# --------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch network pickles.

class PersistentObject:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` stands for: class name + state.

    The embedded ``module_src`` is kept only as an inert string (its length is recorded).
    """

    __slots__ = ("type", "version", "class_name", "state", "module_src_chars")

    def __init__(self, meta):
        if not isinstance(meta, dict):
            raise UnsafePickleError("persistent object without a metadata dict")
        self.type = meta.get("type")
        self.version = meta.get("version")
        self.class_name = meta.get("class_name")
        self.state = meta.get("state")
        src = meta.get("module_src")
        self.module_src_chars = len(src) if isinstance(src, str) else 0
        if self.type != "class" or not isinstance(self.class_name, str) or not isinstance(self.state, dict):
            raise UnsafePickleError("malformed persistent object")

    def __setstate__(self, state):
        raise UnsafePickleError("unexpected state for a persistent object")

    def __repr__(self):
        return f"PersistentObject({self.class_name})"


NVIDIA_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): PersistentObject,
    ("dnnlib.util", "EasyDict"): EasyDict,
    **TORCH_TENSOR_GLOBALS,
    **NUMPY_GLOBALS,
    **BUILTIN_GLOBALS,
}


def load_nvidia_pickle(file) -> Any:
    """Unpickle an NVIDIA network pickle into dicts, :class:`PersistentObject` and tensors."""
    return restricted_load(file, NVIDIA_GLOBALS)


# --------------------------------------------------------------------------------------------
# TensorFlow StyleGAN2 pickles.

class TFNetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state dict."""

    def __init__(self):
        self.state: dict = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafePickleError("malformed TensorFlow network state")
        self.state = state

    def __repr__(self):
        return f"TFNetworkStub({self.state.get('name')!r})"


TF_GLOBALS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetworkStub,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **NUMPY_GLOBALS,
    **BUILTIN_GLOBALS,
}


def load_tf_pickle(file) -> Any:
    """Unpickle a TensorFlow StyleGAN2 pickle into :class:`TFNetworkStub` objects and numpy arrays."""
    return restricted_load(file, TF_GLOBALS)


# --------------------------------------------------------------------------------------------
# TorchScript archives (``torch.jit.save``): the module tree in data.pkl / constants.pkl.

class ScriptObject:
    """Stand-in for an instance of a TorchScript class (``__torch__.<path>.<Class>``): its class name and its
    pickled state (an attribute dict, or whatever its ``__getstate__`` wrote), kept as data; nothing of the
    class is imported, and no method (``__setstate__`` included) runs."""

    __slots__ = ("state",)
    qualname = "__torch__"

    def __new__(cls, *args, **kwargs):
        if args or kwargs:
            raise UnsafePickleError(f"TorchScript object {cls.qualname!r:.80} constructed with arguments")
        obj = super().__new__(cls)
        obj.state = None
        return obj

    def __setstate__(self, state):
        if self.state is not None:
            raise UnsafePickleError(f"TorchScript object {self.qualname!r:.80} given its state twice")
        self.state = state

    def __repr__(self):
        return f"ScriptObject({self.qualname})"


class ScriptClassAllowList(collections.abc.Mapping):
    """``allowed`` plus every ``__torch__`` global, each resolved to its own inert :class:`ScriptObject`
    subclass (made here, never imported); more than ``max_classes`` distinct names are refused."""

    def __init__(self, allowed: Mapping[tuple[str, str], Any], max_classes: int):
        self._allowed = allowed
        self._classes: dict[tuple[str, str], type] = {}
        self._max_classes = max_classes

    def __getitem__(self, key):
        if key in self._allowed:
            return self._allowed[key]
        module, name = key
        if not (isinstance(module, str) and isinstance(name, str)
                and (module == "__torch__" or module.startswith("__torch__."))):
            raise KeyError(key)
        if key not in self._classes:
            if len(self._classes) >= self._max_classes:
                raise UnsafePickleError(f"more than {self._max_classes} TorchScript classes")
            self._classes[key] = type("ScriptObject", (ScriptObject,),
                                      {"__slots__": (), "qualname": f"{module}.{name}"})
        return self._classes[key]

    def __iter__(self):
        return iter({**self._allowed, **self._classes})

    def __len__(self):
        return len(self._allowed) + len(self._classes)


def _jit_list(data):
    """``torch.jit._pickle.build_intlist`` and its siblings: the typed list, unchanged."""
    if not isinstance(data, list):
        raise UnsafePickleError("TorchScript list builder applied to a non-list")
    return data


def _jit_type_tag(value, type_str):
    """``torch.jit._pickle.restore_type_tag``: the value; the static type it names only matters to TorchScript."""
    if not isinstance(type_str, str):
        raise UnsafePickleError("malformed TorchScript type tag")
    return value


TORCHSCRIPT_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    **{("torch.jit._pickle", n): _jit_list
       for n in ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_genericlist")},
    ("torch.jit._pickle", "restore_type_tag"): _jit_type_tag,
    **_STORAGE_GLOBALS,
    **_TORCH_DTYPE_GLOBALS,
}


def load_torchscript_pickle(file, persistent_load: Callable[[Any], Any], max_classes: int) -> Any:
    """Unpickle a TorchScript archive's ``data.pkl`` or ``constants.pkl`` into :class:`ScriptObject` holders,
    containers and tensors; ``persistent_load`` turns its ``('storage', …)`` references into :class:`Storage`."""
    return restricted_load(file, ScriptClassAllowList(TORCHSCRIPT_GLOBALS, max_classes), persistent_load)


#: Every global any of the loaders above accepts, as "module.name" (for classifying files).
KNOWN_SAFE_GLOBALS = frozenset(
    f"{m}.{n}" for m, n in {**NVIDIA_GLOBALS, **TF_GLOBALS, **_STORAGE_GLOBALS}
)
