// bpfnb's CPU profiler: sampled by a perf event (software cpu-clock by default).
// Counts samples per (pid, comm, user stack, kernel stack); settings in stacks.h.
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include <linux/sched.h>

#include "stacks.h"

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
