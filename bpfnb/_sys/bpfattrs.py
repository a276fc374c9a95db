"""Every struct of the bpf(2) ABI the package passes: the parts of `union bpf_attr` per
command, and the `bpf_*_info` structs OBJ_GET_INFO_BY_FD fills. Defined here only."""

from __future__ import annotations

import ctypes as ct

OBJ_NAME_LEN = 16
LINK_INFO_SIZE = 128  # struct bpf_link_info is 64 bytes on 6.18; the tail must be zero


class MapCreateAttr(ct.Structure):
    """BPF_MAP_CREATE."""

    _fields_ = [("map_type", ct.c_uint32), ("key_size", ct.c_uint32),
                ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32),
                ("map_flags", ct.c_uint32), ("inner_map_fd", ct.c_uint32),
                ("numa_node", ct.c_uint32), ("map_name", ct.c_char * OBJ_NAME_LEN),
                ("map_ifindex", ct.c_uint32), ("rest", ct.c_uint32 * 12)]


class ProgLoadAttr(ct.Structure):
    """BPF_PROG_LOAD, up to attach_prog_fd."""

    _fields_ = [("prog_type", ct.c_uint32), ("insn_cnt", ct.c_uint32), ("insns", ct.c_uint64),
                ("license", ct.c_uint64), ("log_level", ct.c_uint32), ("log_size", ct.c_uint32),
                ("log_buf", ct.c_uint64), ("kern_version", ct.c_uint32),
                ("prog_flags", ct.c_uint32), ("prog_name", ct.c_char * OBJ_NAME_LEN),
                ("prog_ifindex", ct.c_uint32), ("expected_attach_type", ct.c_uint32),
                ("prog_btf_fd", ct.c_uint32), ("func_info_rec_size", ct.c_uint32),
                ("func_info", ct.c_uint64), ("func_info_cnt", ct.c_uint32),
                ("line_info_rec_size", ct.c_uint32), ("line_info", ct.c_uint64),
                ("line_info_cnt", ct.c_uint32), ("attach_btf_id", ct.c_uint32),
                ("attach_prog_fd", ct.c_uint32)]


class ElemAttr(ct.Structure):
    """BPF_MAP_{LOOKUP,UPDATE,DELETE}_ELEM, MAP_GET_NEXT_KEY, MAP_LOOKUP_AND_DELETE_ELEM."""

    _fields_ = [("map_fd", ct.c_uint32), ("_pad", ct.c_uint32), ("key", ct.c_uint64),
                ("value", ct.c_uint64), ("flags", ct.c_uint64)]


class BatchAttr(ct.Structure):
    """BPF_MAP_*_BATCH; the kernel writes back `count` (elements done), even on errors."""

    _fields_ = [("in_batch", ct.c_uint64), ("out_batch", ct.c_uint64), ("keys", ct.c_uint64),
                ("values", ct.c_uint64), ("count", ct.c_uint32), ("map_fd", ct.c_uint32),
                ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


class InfoAttr(ct.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""

    _fields_ = [("bpf_fd", ct.c_uint32), ("info_len", ct.c_uint32), ("info", ct.c_uint64)]


class IdAttr(ct.Structure):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID."""

    _fields_ = [("id", ct.c_uint32), ("next_id", ct.c_uint32), ("open_flags", ct.c_uint32)]


class ObjAttr(ct.Structure):
    """BPF_OBJ_PIN and BPF_OBJ_GET."""

    _fields_ = [("pathname", ct.c_uint64), ("bpf_fd", ct.c_uint32), ("file_flags", ct.c_uint32)]


class StatsAttr(ct.Structure):
    """BPF_ENABLE_STATS."""

    _fields_ = [("type", ct.c_uint32)]


class ProgAttachAttr(ct.Structure):
    """BPF_PROG_ATTACH and BPF_PROG_DETACH."""

    _fields_ = [("target_fd", ct.c_uint32), ("attach_bpf_fd", ct.c_uint32),
                ("attach_type", ct.c_uint32), ("attach_flags", ct.c_uint32),
                ("replace_bpf_fd", ct.c_uint32), ("rest", ct.c_uint32 * 7)]


class LinkCreateAttr(ct.Structure):
    """BPF_LINK_CREATE (the target-specific tail left zero)."""

    _fields_ = [("prog_fd", ct.c_uint32), ("target", ct.c_uint32), ("attach_type", ct.c_uint32),
                ("flags", ct.c_uint32), ("rest", ct.c_uint64 * 6)]


class TaskFdQueryAttr(ct.Structure):
    """BPF_TASK_FD_QUERY."""

    _fields_ = [("pid", ct.c_uint32), ("fd", ct.c_uint32), ("flags", ct.c_uint32),
                ("buf_len", ct.c_uint32), ("buf", ct.c_uint64), ("prog_id", ct.c_uint32),
                ("fd_type", ct.c_uint32), ("probe_offset", ct.c_uint64),
                ("probe_addr", ct.c_uint64)]


class MapInfo(ct.Structure):
    """struct bpf_map_info."""

    _fields_ = [
        ("type", ct.c_uint32), ("id", ct.c_uint32), ("key_size", ct.c_uint32),
        ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32), ("map_flags", ct.c_uint32),
        ("name", ct.c_char * OBJ_NAME_LEN), ("ifindex", ct.c_uint32),
        ("btf_vmlinux_value_type_id", ct.c_uint32), ("netns_dev", ct.c_uint64),
        ("netns_ino", ct.c_uint64), ("btf_id", ct.c_uint32), ("btf_key_type_id", ct.c_uint32),
        ("btf_value_type_id", ct.c_uint32), ("btf_vmlinux_id", ct.c_uint32),
        ("map_extra", ct.c_uint64),
    ]


class ProgInfo(ct.Structure):
    """struct bpf_prog_info."""

    _fields_ = [
        ("type", ct.c_uint32), ("id", ct.c_uint32), ("tag", ct.c_uint8 * 8),
        ("jited_prog_len", ct.c_uint32), ("xlated_prog_len", ct.c_uint32),
        ("jited_prog_insns", ct.c_uint64), ("xlated_prog_insns", ct.c_uint64),
        ("load_time", ct.c_uint64), ("created_by_uid", ct.c_uint32), ("nr_map_ids", ct.c_uint32),
        ("map_ids", ct.c_uint64), ("name", ct.c_char * OBJ_NAME_LEN), ("ifindex", ct.c_uint32),
        ("gpl_compatible", ct.c_uint32), ("netns_dev", ct.c_uint64), ("netns_ino", ct.c_uint64),
        ("nr_jited_ksyms", ct.c_uint32), ("nr_jited_func_lens", ct.c_uint32),
        ("jited_ksyms", ct.c_uint64), ("jited_func_lens", ct.c_uint64), ("btf_id", ct.c_uint32),
        ("func_info_rec_size", ct.c_uint32), ("func_info", ct.c_uint64),
        ("nr_func_info", ct.c_uint32), ("nr_line_info", ct.c_uint32), ("line_info", ct.c_uint64),
        ("jited_line_info", ct.c_uint64), ("nr_jited_line_info", ct.c_uint32),
        ("line_info_rec_size", ct.c_uint32), ("jited_line_info_rec_size", ct.c_uint32),
        ("nr_prog_tags", ct.c_uint32), ("prog_tags", ct.c_uint64), ("run_time_ns", ct.c_uint64),
        ("run_cnt", ct.c_uint64), ("recursion_misses", ct.c_uint64),
        ("verified_insns", ct.c_uint32), ("attach_btf_obj_id", ct.c_uint32),
        ("attach_btf_id", ct.c_uint32),
    ]


class FuncInfo(ct.Structure):
    """struct bpf_func_info: one record of ProgInfo.func_info."""

    _fields_ = [("insn_off", ct.c_uint32), ("type_id", ct.c_uint32)]


class BtfInfo(ct.Structure):
    """struct bpf_btf_info."""

    _fields_ = [("btf", ct.c_uint64), ("btf_size", ct.c_uint32), ("id", ct.c_uint32),
                ("name", ct.c_uint64), ("name_len", ct.c_uint32), ("kernel_btf", ct.c_uint32)]


class LinkInfo(ct.Structure):
    """struct bpf_link_info as raw bytes (its union differs per link type)."""

    _fields_ = [("raw", ct.c_ubyte * LINK_INFO_SIZE)]
