/* bpfnb: bcc's C conveniences over libbpf (included after vmlinux.h and libbpf's headers).
 * rewrite.py turns `map.method(args)` into `bpfnb_method(&map, args)`, and
 * BPF_TABLE("type", ...) into BPF_TABLE(type, ...). */
#ifndef BPFNB_COMPAT_H
#define BPFNB_COMPAT_H

char _bpfnb_license[] SEC("license") = "GPL";

/* ---- macros vmlinux.h lacks (UAPI #defines) ---- */
#define ETH_HLEN 14
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_8021Q 0x8100
#define ETH_P_IPV6 0x86DD
#define ETH_P_ALL 0x0003
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_RECLASSIFY 1
#define TC_ACT_SHOT 2
#define TC_ACT_PIPE 3
#define TC_ACT_STOLEN 4
#define TC_ACT_REDIRECT 7
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define TASK_RUNNING 0
#define TASK_INTERRUPTIBLE 1
#define TASK_UNINTERRUPTIBLE 2
#define PF_KTHREAD 0x00200000
#define MAX_ERRNO 4095
#define PERF_MAX_STACK_DEPTH 127
#define BPF_MAX_STACK_DEPTH 127

/* ---- bcc helpers ---- */
#define htons(x) bpf_htons(x)
#define ntohs(x) bpf_ntohs(x)
#define htonl(x) bpf_htonl(x)
#define ntohl(x) bpf_ntohl(x)
#define lock_xadd(ptr, val) ((void)__sync_fetch_and_add(ptr, val))
#define bpf_trace_printk(fmt, ...) \
    ({ static const char ____fmt[] = fmt; (bpf_trace_printk)(____fmt, sizeof(____fmt), ##__VA_ARGS__); })
static inline __attribute__((always_inline)) unsigned int bpf_log2(unsigned int v) {
    unsigned int r, shift;
    r = (v > 0xFFFF) << 4; v >>= r;
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
    shift = (v > 0xF) << 2; v >>= shift; r |= shift;
    shift = (v > 0x3) << 1; v >>= shift; r |= shift;
    r |= (v >> 1);
    return r;
}
/* bcc's bpf_log2l (hi ? bpf_log2(hi) + 33 : bpf_log2(v) + 1), without the branch: the same
   value for every v, and ~2 ms less of clang's time per compile */
static inline __attribute__((always_inline)) unsigned int bpf_log2l(unsigned long v) {
    unsigned int r, shift;
    r = (v > 0xFFFFFFFFUL) << 5; v >>= r;
    shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
    shift = (v > 0xF) << 2; v >>= shift; r |= shift;
    shift = (v > 0x3) << 1; v >>= shift; r |= shift;
    r |= (v >> 1);
    return r + 1;
}
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

/* ---- map declarations ---- */
#define BPFNB_T_hash BPF_MAP_TYPE_HASH
#define BPFNB_T_array BPF_MAP_TYPE_ARRAY
#define BPFNB_T_prog BPF_MAP_TYPE_PROG_ARRAY
#define BPFNB_T_percpu_hash BPF_MAP_TYPE_PERCPU_HASH
#define BPFNB_T_percpu_array BPF_MAP_TYPE_PERCPU_ARRAY
#define BPFNB_T_stacktrace BPF_MAP_TYPE_STACK_TRACE
#define BPFNB_T_cgroup_array BPF_MAP_TYPE_CGROUP_ARRAY
#define BPFNB_T_lru_hash BPF_MAP_TYPE_LRU_HASH
#define BPFNB_T_lru_percpu_hash BPF_MAP_TYPE_LRU_PERCPU_HASH
#define BPFNB_T_lpm_trie BPF_MAP_TYPE_LPM_TRIE
#define BPFNB_T_devmap BPF_MAP_TYPE_DEVMAP
#define BPFNB_T_devmap_hash BPF_MAP_TYPE_DEVMAP_HASH
#define BPFNB_T_cpumap BPF_MAP_TYPE_CPUMAP
#define BPFNB_T_xskmap BPF_MAP_TYPE_XSKMAP
#define BPFNB_T_sockmap BPF_MAP_TYPE_SOCKMAP
#define BPFNB_T_sockhash BPF_MAP_TYPE_SOCKHASH
#define BPFNB_T_cgroup_storage BPF_MAP_TYPE_CGROUP_STORAGE
#define BPFNB_T_percpu_cgroup_storage BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
#define BPFNB_T_queue BPF_MAP_TYPE_QUEUE
#define BPFNB_T_stack BPF_MAP_TYPE_STACK
#define BPFNB_T_sk_storage BPF_MAP_TYPE_SK_STORAGE
#define BPFNB_T_task_storage BPF_MAP_TYPE_TASK_STORAGE
#define BPFNB_T_inode_storage BPF_MAP_TYPE_INODE_STORAGE
#define BPFNB_T_reuseport_sockarray BPF_MAP_TYPE_REUSEPORT_SOCKARRAY
/* bcc: a histogram with an int key is an array, any other key a hash */
#define BPFNB_HIST_TYPE(_key) \
    (__builtin_types_compatible_p(_key, int) ? BPF_MAP_TYPE_ARRAY : BPF_MAP_TYPE_HASH)

#define BPFNB_MAP(_type, _key, _leaf, _name, _size, _flags) \
    struct { __uint(type, _type); __type(key, _key); __type(value, _leaf); \
             __uint(max_entries, _size); __uint(map_flags, _flags); } _name SEC(".maps")
#define BPFNB_KEYLESS(_type, _leaf, _name, _size, _flags) \
    struct { __uint(type, _type); __type(value, _leaf); __uint(max_entries, _size); \
             __uint(map_flags, _flags); } _name SEC(".maps")

#define BPF_F_TABLE(_type, _key, _leaf, _name, _size, _flags) \
    BPFNB_MAP(BPFNB_T_##_type, _key, _leaf, _name, _size, _flags)
#define BPF_TABLE(_type, _key, _leaf, _name, _size) BPF_F_TABLE(_type, _key, _leaf, _name, _size, 0)
#define BPF_TABLE_PUBLIC BPF_TABLE
#define BPF_TABLE_SHARED BPF_TABLE

#define BPFNB_SEL2(_1, _2, NAME, ...) NAME
#define BPFNB_SEL3(_1, _2, _3, NAME, ...) NAME
#define BPFNB_SEL4(_1, _2, _3, _4, NAME, ...) NAME

#define BPFNB_HASH1(n) BPFNB_MAP(BPF_MAP_TYPE_HASH, u64, u64, n, 10240, 0)
#define BPFNB_HASH2(n, k) BPFNB_MAP(BPF_MAP_TYPE_HASH, k, u64, n, 10240, 0)
#define BPFNB_HASH3(n, k, v) BPFNB_MAP(BPF_MAP_TYPE_HASH, k, v, n, 10240, 0)
#define BPFNB_HASH4(n, k, v, s) BPFNB_MAP(BPF_MAP_TYPE_HASH, k, v, n, s, 0)
#define BPF_HASH(...) BPFNB_SEL4(__VA_ARGS__, BPFNB_HASH4, BPFNB_HASH3, BPFNB_HASH2, \
                                 BPFNB_HASH1)(__VA_ARGS__)
#define BPFNB_PHASH1(n) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_HASH, u64, u64, n, 10240, 0)
#define BPFNB_PHASH2(n, k) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_HASH, k, u64, n, 10240, 0)
#define BPFNB_PHASH3(n, k, v) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_HASH, k, v, n, 10240, 0)
#define BPFNB_PHASH4(n, k, v, s) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_HASH, k, v, n, s, 0)
#define BPF_PERCPU_HASH(...) BPFNB_SEL4(__VA_ARGS__, BPFNB_PHASH4, BPFNB_PHASH3, \
                                        BPFNB_PHASH2, BPFNB_PHASH1)(__VA_ARGS__)
#define BPFNB_ARRAY1(n) BPFNB_MAP(BPF_MAP_TYPE_ARRAY, int, u64, n, 10240, 0)
#define BPFNB_ARRAY2(n, v) BPFNB_MAP(BPF_MAP_TYPE_ARRAY, int, v, n, 10240, 0)
#define BPFNB_ARRAY3(n, v, s) BPFNB_MAP(BPF_MAP_TYPE_ARRAY, int, v, n, s, 0)
#define BPF_ARRAY(...) BPFNB_SEL3(__VA_ARGS__, BPFNB_ARRAY3, BPFNB_ARRAY2, \
                                  BPFNB_ARRAY1)(__VA_ARGS__)
#define BPFNB_PARRAY1(n) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, int, u64, n, 10240, 0)
#define BPFNB_PARRAY2(n, v) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, int, v, n, 10240, 0)
#define BPFNB_PARRAY3(n, v, s) BPFNB_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, int, v, n, s, 0)
#define BPF_PERCPU_ARRAY(...) BPFNB_SEL3(__VA_ARGS__, BPFNB_PARRAY3, BPFNB_PARRAY2, \
                                         BPFNB_PARRAY1)(__VA_ARGS__)
#define BPFNB_HIST1(n) BPFNB_MAP(BPF_MAP_TYPE_ARRAY, int, u64, n, 64, 0)
#define BPFNB_HIST2(n, k) BPFNB_MAP(BPFNB_HIST_TYPE(k), k, u64, n, 64, 0)
#define BPFNB_HIST3(n, k, s) BPFNB_MAP(BPFNB_HIST_TYPE(k), k, u64, n, s, 0)
#define BPF_HISTOGRAM(...) BPFNB_SEL3(__VA_ARGS__, BPFNB_HIST3, BPFNB_HIST2, \
                                      BPFNB_HIST1)(__VA_ARGS__)
#define BPFNB_LPM1(n) BPFNB_MAP(BPF_MAP_TYPE_LPM_TRIE, u64, u64, n, 10240, BPF_F_NO_PREALLOC)
#define BPFNB_LPM2(n, k) BPFNB_MAP(BPF_MAP_TYPE_LPM_TRIE, k, u64, n, 10240, BPF_F_NO_PREALLOC)
#define BPFNB_LPM3(n, k, v) BPFNB_MAP(BPF_MAP_TYPE_LPM_TRIE, k, v, n, 10240, BPF_F_NO_PREALLOC)
#define BPFNB_LPM4(n, k, v, s) BPFNB_MAP(BPF_MAP_TYPE_LPM_TRIE, k, v, n, s, BPF_F_NO_PREALLOC)
#define BPF_LPM_TRIE(...) BPFNB_SEL4(__VA_ARGS__, BPFNB_LPM4, BPFNB_LPM3, BPFNB_LPM2, \
                                     BPFNB_LPM1)(__VA_ARGS__)
struct bpfnb_stack_trace { u64 ip[127]; };  /* bcc's StackTrace leaf */
#define BPF_STACK_TRACE(n, s) \
    BPFNB_MAP(BPF_MAP_TYPE_STACK_TRACE, int, struct bpfnb_stack_trace, n, s, 0)
#define BPF_PROG_ARRAY(n, s) BPFNB_MAP(BPF_MAP_TYPE_PROG_ARRAY, int, int, n, s, 0)
#define BPF_CGROUP_ARRAY(n, s) BPFNB_MAP(BPF_MAP_TYPE_CGROUP_ARRAY, int, int, n, s, 0)
#define BPF_DEVMAP(n, s) BPFNB_MAP(BPF_MAP_TYPE_DEVMAP, int, int, n, s, 0)
#define BPF_CPUMAP(n, s) BPFNB_MAP(BPF_MAP_TYPE_CPUMAP, int, u32, n, s, 0)
#define BPF_XSKMAP(n, s) BPFNB_MAP(BPF_MAP_TYPE_XSKMAP, int, int, n, s, 0)
#define BPF_SOCKMAP(n, s) BPFNB_MAP(BPF_MAP_TYPE_SOCKMAP, int, int, n, s, 0)
#define BPFNB_SOCKHASH1(n) BPFNB_MAP(BPF_MAP_TYPE_SOCKHASH, u32, int, n, 10240, 0)
#define BPFNB_SOCKHASH2(n, k) BPFNB_MAP(BPF_MAP_TYPE_SOCKHASH, k, int, n, 10240, 0)
#define BPFNB_SOCKHASH3(n, k, s) BPFNB_MAP(BPF_MAP_TYPE_SOCKHASH, k, int, n, s, 0)
#define BPF_SOCKHASH(...) BPFNB_SEL3(__VA_ARGS__, BPFNB_SOCKHASH3, BPFNB_SOCKHASH2, \
                                     BPFNB_SOCKHASH1)(__VA_ARGS__)
#define BPF_CGROUP_STORAGE(n, v) \
    BPFNB_MAP(BPF_MAP_TYPE_CGROUP_STORAGE, struct bpf_cgroup_storage_key, v, n, 0, 0)
#define BPF_PERCPU_CGROUP_STORAGE(n, v) \
    BPFNB_MAP(BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, struct bpf_cgroup_storage_key, v, n, 0, 0)
#define BPF_SK_STORAGE(n, v) BPFNB_MAP(BPF_MAP_TYPE_SK_STORAGE, int, v, n, 0, BPF_F_NO_PREALLOC)
#define BPF_TASK_STORAGE(n, v) \
    BPFNB_MAP(BPF_MAP_TYPE_TASK_STORAGE, int, v, n, 0, BPF_F_NO_PREALLOC)
#define BPF_INODE_STORAGE(n, v) \
    BPFNB_MAP(BPF_MAP_TYPE_INODE_STORAGE, int, v, n, 0, BPF_F_NO_PREALLOC)
#define BPF_QUEUE(n, v, s) BPFNB_KEYLESS(BPF_MAP_TYPE_QUEUE, v, n, s, 0)
#define BPF_STACK(n, v, s) BPFNB_KEYLESS(BPF_MAP_TYPE_STACK, v, n, s, 0)
#define BPF_ARRAY_OF_MAPS(n, inner, s) \
    struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __type(key, int); \
             __uint(max_entries, s); __array(values, typeof(inner)); } n SEC(".maps")
#define BPFNB_HOM3(n, inner, s) \
    struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __type(key, int); \
             __uint(max_entries, s); __array(values, typeof(inner)); } n SEC(".maps")
#define BPFNB_HOM4(n, k, inner, s) \
    struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __type(key, k); \
             __uint(max_entries, s); __array(values, typeof(inner)); } n SEC(".maps")
#define BPF_HASH_OF_MAPS(...) BPFNB_SEL4(__VA_ARGS__, BPFNB_HOM4, BPFNB_HOM3, _, _)(__VA_ARGS__)
#define BPF_PERF_OUTPUT(n) \
    struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, sizeof(int)); \
             __uint(value_size, sizeof(int)); } n SEC(".maps")
#define BPF_RINGBUF_OUTPUT(n, pages) \
    struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, (pages) * 4096); } \
    n SEC(".maps")

/* ---- map methods: `m` is the map's address ---- */
#define bpfnb_lookup(m, k) ((typeof((m)->value))bpf_map_lookup_elem(m, k))
#define bpfnb_lookup_map(m, k) bpf_map_lookup_elem(m, k)
#define bpfnb_lookup_or_try_init(m, k, init) ({ \
    typeof((m)->value) __bv = bpf_map_lookup_elem(m, k); \
    if (!__bv) { bpf_map_update_elem(m, k, init, BPF_NOEXIST); __bv = bpf_map_lookup_elem(m, k); } \
    __bv; })
#define bpfnb_lookup_or_init bpfnb_lookup_or_try_init
#define bpfnb_update(m, k, v) bpf_map_update_elem(m, k, v, BPF_ANY)
#define bpfnb_insert(m, k, v) bpf_map_update_elem(m, k, v, BPF_NOEXIST)
#define bpfnb_delete(m, k) bpf_map_delete_elem(m, k)
#define bpfnb__increment(m, k, n, ...) ({ \
    typeof(*(m)->key) __bk = (k); \
    typeof((m)->value) __bv = bpf_map_lookup_elem(m, &__bk); \
    if (!__bv) { typeof(*(m)->value) __bz; __builtin_memset(&__bz, 0, sizeof(__bz)); \
                 bpf_map_update_elem(m, &__bk, &__bz, BPF_NOEXIST); \
                 __bv = bpf_map_lookup_elem(m, &__bk); } \
    if (__bv) __sync_fetch_and_add(__bv, (n)); })
#define bpfnb_increment(m, ...) bpfnb__increment(m, __VA_ARGS__, 1, 0)
#define bpfnb_atomic_increment bpfnb_increment
#define bpfnb_perf_submit(m, ctx, data, size) \
    bpf_perf_event_output(ctx, m, BPF_F_CURRENT_CPU, data, size)
#define bpfnb_perf_submit_skb(m, ctx, skb_len, data, size) \
    bpf_perf_event_output(ctx, m, ((u64)(skb_len) << 32) | BPF_F_CURRENT_CPU, data, size)
#define bpfnb_ringbuf_output(m, data, size, flags) bpf_ringbuf_output(m, data, size, flags)
#define bpfnb_ringbuf_reserve(m, size) bpf_ringbuf_reserve(m, size, 0)
#define bpfnb_ringbuf_submit(m, data, flags) bpf_ringbuf_submit(data, flags)
#define bpfnb_ringbuf_discard(m, data, flags) bpf_ringbuf_discard(data, flags)
#define bpfnb_push(m, v, flags) bpf_map_push_elem(m, v, flags)
#define bpfnb_pop(m, v) bpf_map_pop_elem(m, v)
#define bpfnb_peek(m, v) bpf_map_peek_elem(m, v)
#define bpfnb_get_stackid(m, ctx, flags) bpf_get_stackid(ctx, m, flags)
#define bpfnb_call(m, ctx, idx) bpf_tail_call(ctx, m, idx)
#define bpfnb_redirect_map(m, idx, flags) bpf_redirect_map(m, idx, flags)
#define bpfnb_check_current_task(m, idx) bpf_current_task_under_cgroup(m, idx)
#define bpfnb_get_local_storage(m, flags) ((typeof((m)->value))bpf_get_local_storage(m, flags))
#define bpfnb_sock_map_update(m, ctx, k, flags) bpf_sock_map_update(ctx, m, k, flags)
#define bpfnb_sock_hash_update(m, ctx, k, flags) bpf_sock_hash_update(ctx, m, k, flags)
#define bpfnb_msg_redirect_map(m, msg, k, flags) bpf_msg_redirect_map(msg, m, k, flags)
#define bpfnb_msg_redirect_hash(m, msg, k, flags) bpf_msg_redirect_hash(msg, m, k, flags)
#define bpfnb_sk_redirect_map(m, skb, k, flags) bpf_sk_redirect_map(skb, m, k, flags)
#define bpfnb_sk_redirect_hash(m, skb, k, flags) bpf_sk_redirect_hash(skb, m, k, flags)
#define bpfnb_sk_storage_get(m, sk, v, flags) \
    ((typeof((m)->value))bpf_sk_storage_get(m, sk, v, flags))
#define bpfnb_task_storage_get(m, t, v, flags) \
    ((typeof((m)->value))bpf_task_storage_get(m, t, v, flags))
#define bpfnb_inode_storage_get(m, i, v, flags) \
    ((typeof((m)->value))bpf_inode_storage_get(m, i, v, flags))

/* ---- probes whose name says where they attach ---- */
#define TRACEPOINT_PROBE(category, event) \
    SEC("tracepoint/" #category "/" #event) \
    int tracepoint__##category##__##event(struct tracepoint__##category##__##event *args)
#define RAW_TRACEPOINT_PROBE(event) \
    SEC("raw_tracepoint/" #event) int raw_tracepoint__##event(struct bpf_raw_tracepoint_args *ctx)
#define KFUNC_PROBE(event, args...) SEC("fentry/" #event) int BPF_PROG(kfunc__##event, ##args)
#define KRETFUNC_PROBE(event, args...) SEC("fexit/" #event) int BPF_PROG(kretfunc__##event, ##args)
#define LSM_PROBE(event, args...) SEC("lsm/" #event) int BPF_PROG(lsm__##event, ##args)

#endif
