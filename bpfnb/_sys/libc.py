"""The C library through ctypes: one handle for the whole package, prototypes set once.

Calls set errno (`ctypes.get_errno()`); `syscall` returns a C long so fds and negative
errors survive the conversion.
"""

from __future__ import annotations

import ctypes as ct

libc = ct.CDLL(None, use_errno=True)
libc.syscall.restype = ct.c_long
libc.vsnprintf.argtypes = [ct.c_char_p, ct.c_size_t, ct.c_char_p, ct.c_void_p]
libc.vsnprintf.restype = ct.c_int
libc.free.argtypes = [ct.c_void_p]
libc.getauxval.argtypes = [ct.c_ulong]
libc.getauxval.restype = ct.c_ulong
