// bpfnb's off-CPU profiler (the offcputime method): at sched_switch the task going off
// CPU (the current one) has its time and stacks recorded; when it is switched back in,
// the time it was away is added to its (pid, comm, user stack, kernel stack) in
// microseconds. Settings as in stacks.h, and min_us.
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

#include "stacks.h"

#ifndef min_us
const volatile u64 min_us = 1;         // shorter blocks are not counted
#endif

struct away_t {
    u64 ts;
    struct key_t key;
};
BPF_HASH(start, u32, struct away_t, 40960);
BPF_HASH(counts, struct key_t, u64, 40960);
BPF_STACK_TRACE(stack_traces, 16384);

TRACEPOINT_PROBE(sched, sched_switch) {
    u64 now = bpf_ktime_get_ns();
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    if (tid != 0 && (filter_pid == 0 || tgid == filter_pid)) {
        struct away_t away = {};
        away.ts = now;
        away.key.pid = tgid;
        away.key.user_stack_id =
            user_stacks ? stack_traces.get_stackid(args, BPF_F_USER_STACK) : -1;
        away.key.kernel_stack_id = kernel_stacks ? stack_traces.get_stackid(args, 0) : -1;
        bpf_get_current_comm(&away.key.comm, sizeof(away.key.comm));
        start.update(&tid, &away);
    }
    u32 next = args->next_pid;
    struct away_t *was = start.lookup(&next);
    if (was == 0)
        return 0;
    u64 delta = (now - was->ts) / 1000;
    if (delta >= min_us) {
        struct key_t key = was->key;
        counts.increment(key, delta);
    }
    start.delete(&next);
    return 0;
}
