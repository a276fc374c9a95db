"""One exception family. The first line of every message says what happened and what to do."""

from __future__ import annotations


class BpfnbError(Exception):
    """Base of every error bpfnb raises on purpose."""

    #: extra detail kept out of the message (verifier log, compiler output)
    details: str = ""

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details

    @property
    def summary(self) -> str:
        """The first line of the message."""
        return str(self).split("\n", 1)[0]


class CompileError(BpfnbError):
    """The C source did not compile. `diagnostics` lists (line, column, message)."""

    def __init__(
        self, message: str, *, details: str = "",
        diagnostics: list[tuple[int, int, str]] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.diagnostics = diagnostics or []


class VerifierError(BpfnbError):
    """The kernel's verifier rejected a program. The full log is in `log`."""

    def __init__(self, message: str, *, function: str, reason: str, log: str, line: int | None):
        super().__init__(message, details=log)
        self.function = function
        self.reason = reason
        self.log = log
        self.line = line


class PrivilegeError(BpfnbError, PermissionError):
    """This process lacks a capability, or lockdown or a sysctl forbids the operation."""


class FeatureUnavailableError(BpfnbError):
    """The running kernel lacks a feature the program needs (e.g. kprobes)."""


class AttachError(BpfnbError):
    """A probe could not be attached."""


class UnknownTargetError(AttachError, LookupError):
    """A tracepoint, kernel function or user symbol does not exist. `matches` are close names."""

    def __init__(self, message: str, *, matches: list[str] | None = None,
                 details: str = "") -> None:
        super().__init__(message, details=details)
        self.matches = matches or []


class ProgramClosedError(BpfnbError):
    """The program was closed; its maps and probes are gone."""


class UnknownMapError(BpfnbError, KeyError):
    """No map of that name in the program."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class MapError(BpfnbError):
    """A map operation failed."""


class KeyExistsError(MapError):
    """The key is already in the map (update with flags='noexist')."""


class KeyNotFoundError(MapError, KeyError):
    """The key is not in the map."""

    def __str__(self) -> str:
        return str(self.args[0])


class MapFullError(MapError):
    """The map holds max_entries elements and cannot take a new key."""


class KeyTypeError(MapError, TypeError):
    """A key or value does not have the shape of the map's type."""


class UnsupportedMapError(MapError):
    """The operation is not defined for this map type."""


class ReplayError(BpfnbError):
    """A recording is missing, corrupt or does not hold what was asked."""


class ZipLimitError(ReplayError):
    """A zip entry is larger (or expands more) than bpfnb reads from an untrusted file."""


class RecordArgumentError(BpfnbError, ValueError):
    """An argument of record() is out of range (the message names it)."""


class BtfError(BpfnbError):
    """BTF data is malformed or uses a construct bpfnb cannot turn into ctypes."""


class MapLayoutError(BtfError):
    """A map's key or value type does not have the map's key or value size."""


class ElfError(BpfnbError, ValueError):
    """Not an ELF file this reader understands."""


class InstallError(BpfnbError):
    """install-kernel cannot do what was asked; the message says why and what to do."""


class UnsafePathError(BpfnbError):
    """A directory root would write into can be changed by someone else, or changed under it."""


class CapabilityError(BpfnbError):
    """A capability name is unknown or the process could not change its capability sets."""
