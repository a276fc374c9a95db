// What the kit's stack collectors (profile.c, offcpu.c) share: their common settings and
// the key of their `counts` map. bpfnb.profiler.programs.source() puts this file in place
// of their line including it (bcc's BPF(text=) and clang reading stdin have no directory
// to look in, and an object cached by its text then covers this file too).
// Settings are read-only globals, set per load (consts=): libbpf builds the object once
// per kernel. bcc has no globals and gets them as macros instead (-Dfilter_pid=...),
// hence the #ifndef.
#ifndef filter_pid
const volatile u32 filter_pid = 0;     // tgid to follow, 0 for every process
const volatile u32 user_stacks = 1;    // 0: no user stacks
const volatile u32 kernel_stacks = 1;  // 0: no kernel stacks
#endif

struct key_t {
    u32 pid;
    int user_stack_id;
    int kernel_stack_id;
    char comm[TASK_COMM_LEN];
};
