"""The C API's ABI for ctypes, read from the C header itself (include/kdfuse/kdfuse.h, the one definition; an
installed package carries a copy in kdfuse/include/): the enumerators and integer #defines, every typedef'd struct
as a ctypes.Structure (fields in order, nested structs and fixed arrays, the C alignment rules applied by ctypes)
whose constructor starts from the header's KDF_*_INIT initialiser, and every KDFUSE_API function's return and
argument types. Nothing here repeats the header by hand; python/tests/test_binding_abi.py compiles the header and
checks every struct's size and every field's offset against the parsed layout.

The header is written in a small, regular subset of C that this reader accepts: `typedef enum X { A = 1, ... } X;`,
`typedef struct X { type a, b; type c[N]; ... } X;`, `#define NAME <integer>` and `#define X_INIT {...}`,
`KDFUSE_API ret name(type arg, ...);`. Anything else fails loudly at import.
"""
import ctypes
import pathlib
import re

_HERE = pathlib.Path(__file__).resolve().parent
HEADER_CANDIDATES = (_HERE.parent / "include" / "kdfuse" / "kdfuse.h",               # installed package
                     _HERE.parents[2] / "include" / "kdfuse" / "kdfuse.h")          # source tree


def header_path():
    for path in HEADER_CANDIDATES:
        if path.is_file():
            return path
    raise ImportError(f"kdfuse: the C header kdfuse.h is missing (looked in {[str(p) for p in HEADER_CANDIDATES]})")


STATUS = "status"  # the return type kdfStatus_t: the binding raises KdfuseError when it is not success

_SCALARS = {"size_t": ctypes.c_size_t, "int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64,
            "int32_t": ctypes.c_int32, "int": ctypes.c_int, "float": ctypes.c_float}
c_enum = ctypes.c_int  # C enums are 4-byte ints on every ABI kdfuse targets


def _strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


class Header:
    """The parsed header: constants (enumerators and integer #defines), enums (type names), structs
    (name -> ctypes.Structure subclass), initialisers (struct name -> its KDF_*_INIT values) and functions
    (name -> (restype, argtypes), restype STATUS for kdfStatus_t)."""

    def __init__(self, text):
        text = _strip_comments(text).replace("\\\n", " ")
        self.constants, self.enums, self.structs, self.functions = {}, set(), {}, {}
        self._parse_defines(text)
        for name, body in re.findall(r"typedef\s+enum\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", text, re.S):
            self.enums.add(name)
            value = -1
            for entry in filter(None, (e.strip() for e in body.split(","))):
                key, _, given = (s.strip() for s in entry.partition("="))
                value = int(given, 0) if given else value + 1
                self.constants[key] = value
        for name, body in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", text, re.S):
            self.structs[name] = self._struct(name, body)
        self._inits = dict(re.findall(r"#define\s+(\w+_INIT)\s+(\{.*?\})\s*$", text, re.M))
        for name, cls in self.structs.items():
            cls._init_values = self._initialiser(name)
        for restype, name, args in re.findall(r"KDFUSE_API\s+([\w\s\*]+?)\s*\b(kdf\w+)\s*\(([^)]*)\)\s*;", text):
            self.functions[name] = (self._type(restype, returning=True),
                                    [] if args.strip() == "void" else [self._type(self._arg_type(a))
                                                                       for a in args.split(",")])

    def _parse_defines(self, text):
        for name, value in re.findall(r"#define\s+(\w+)\s+(-?\d+)\s*$", text, re.M):
            self.constants[name] = int(value)

    def _struct(self, name, body):
        fields = []
        for declaration in filter(None, (d.strip() for d in body.split(";"))):
            match = re.match(r"(\w+)\s+(.*)$", declaration, re.S)
            if not match:
                raise ImportError(f"kdfuse.h: cannot read the field declaration {declaration!r} of {name}")
            type_name, declarators = match.groups()
            base = self._field_type(type_name, name)
            for declarator in (d.strip() for d in declarators.split(",")):
                array = re.match(r"(\w+)\s*\[\s*(\w+)\s*\]$", declarator)
                if array:
                    count = array.group(2)
                    count = int(count) if count.isdigit() else self.constants[count]
                    fields.append((array.group(1), base * count))
                elif re.match(r"\w+$", declarator):
                    fields.append((declarator, base))
                else:
                    raise ImportError(f"kdfuse.h: cannot read the declarator {declarator!r} of {name}")
        return type(name, (_Params,), {"_fields_": fields, "_field_names": frozenset(f for f, _ in fields)})

    def _field_type(self, type_name, owner):
        if type_name in _SCALARS:
            return _SCALARS[type_name]
        if type_name in self.enums:
            return c_enum
        if type_name in self.structs:
            return self.structs[type_name]
        raise ImportError(f"kdfuse.h: unknown field type {type_name!r} in {owner}")

    def _initialiser(self, struct_name):
        """The positional values of the struct's KDF_*_INIT macro (nested initialisers of struct fields and of
        arrays resolved: those fields are left zero, which is what both initialisers say)."""
        macro = next((m for m, v in self._inits.items() if f"sizeof({struct_name})" in v), None)
        if macro is None:
            return None
        items = self._split(self._inits[macro][1:-1])
        values = []
        for item in items:
            item = item.strip()
            if item.startswith("sizeof("):
                values.append(None)  # struct_size: the constructor fills it
            elif item.startswith("{") or item.endswith("_INIT"):
                values.append(...)  # a nested struct or array: zero (the header's initialisers are all zero)
            elif item in self.constants:
                values.append(self.constants[item])
            else:
                values.append(float(item.rstrip("fF")) if re.search(r"[.eE]", item) else int(item, 0))
        return values

    @staticmethod
    def _split(text):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(text):
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                parts.append(text[start:i])
                start = i + 1
        parts.append(text[start:])
        return parts

    @staticmethod
    def _arg_type(argument):
        """The type of a parameter declaration (its name dropped)."""
        argument = argument.strip()
        return re.sub(r"\b\w+$", "", argument).strip() if re.search(r"[\w\*]\s*\b\w+$", argument) else argument

    def _type(self, c_type, returning=False):
        c_type = " ".join(c_type.replace("*", " * ").split())
        if returning and c_type == "kdfStatus_t":
            return STATUS
        stars = c_type.count("*")
        base = c_type.replace("*", " ").replace("const", " ").split()
        if len(base) != 1:
            raise ImportError(f"kdfuse.h: cannot read the type {c_type!r}")
        base = base[0]
        if base in ("kdfHandle_t", "kdfStream_t"):  # pointers to opaque structs
            return ctypes.c_void_p if stars == 0 else ctypes.POINTER(ctypes.c_void_p)
        if stars == 0:
            if base in self.enums:
                return c_enum
            return _SCALARS[base]
        if base == "void":
            return ctypes.c_void_p if stars == 1 else ctypes.POINTER(ctypes.c_void_p)  # void*, void* const*
        if base == "char" and stars == 1:
            return ctypes.c_char_p
        if stars == 1:
            if base in self.structs:
                return ctypes.POINTER(self.structs[base])
            if base in self.enums:
                return ctypes.POINTER(c_enum)
            if base in ("int32_t",):
                return ctypes.c_void_p  # device buffers of integers (CRD's index status)
            return ctypes.POINTER(_SCALARS[base])
        raise ImportError(f"kdfuse.h: cannot read the type {c_type!r}")


class _Params(ctypes.Structure):
    """A struct of the C API. Keyword arguments set fields; the others start from the header's KDF_*_INIT
    initialiser, struct_size included. Positional arguments are taken in field order, as in C."""

    _init_values = None
    _field_names = frozenset()

    def __init__(self, *args, **kwargs):
        super().__init__()
        if self._init_values is not None:
            for (name, _), value in zip(self._fields_, self._init_values):
                if value is None:
                    setattr(self, name, ctypes.sizeof(self))
                elif value is not ...:
                    setattr(self, name, value)
        for (name, _), value in zip(self._fields_, args):
            setattr(self, name, value)
        for name, value in kwargs.items():
            if name not in self._field_names:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)


HEADER = Header(header_path().read_text())
STRUCTS = HEADER.structs
CONSTANTS = HEADER.constants
FUNCTIONS = HEADER.functions
