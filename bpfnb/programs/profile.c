// bpfnb's CPU profiler: sampled by a perf event (software cpu-clock by default).
// Counts samples per (pid, comm, user stack, kernel stack). Its settings are read-only
// globals, set per load (consts=): libbpf builds the object once per kernel. bcc has no
// globals and gets them as macros instead (-Dfilter_pid=...), hence the #ifndef.
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>

#ifndef filter_pid
const volatile u32 filter_pid = 0;     // tgid to sample, 0 for every process
const volatile u32 user_stacks = 1;    // 0: no user stacks
const volatile u32 kernel_stacks = 1;  // 0: no kernel stacks
#endif

struct key_t {
    u32 pid;
    int user_stack_id;
    int kernel_stack_id;
    char comm[TASK_COMM_LEN];
};
BPF_HASH(counts, struct key_t, u64, 40960);
BPF_STACK_TRACE(stack_traces, 16384);

int on_sample(struct bpf_perf_event_data *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (filter_pid != 0 && tgid != filter_pid)
        return 0;
    if (tgid == 0)  // the idle task
        return 0;
    struct key_t key = {};
    key.pid = tgid;
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    key.user_stack_id = user_stacks ? stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK) : -1;
    key.kernel_stack_id = kernel_stacks ? stack_traces.get_stackid(&ctx->regs, 0) : -1;
    counts.increment(key);
    return 0;
}
