"""Kernel and system-library ABI: thin ctypes layers, no policy.

bpf(2) is one layer: `bpfsys` (the call, every command number in `Cmd`, map and program
types, element/batch/info/id/pin ops), `bpfattrs` (every attr and info struct), `bpfobjs`
(objects by id, fdinfo, BTF and link info), `bpflink` (links and PROG_ATTACH), `errnos`
(the one errno -> bpfnb error table). `libc` is the one C library handle.
"""
