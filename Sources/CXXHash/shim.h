#include <xxhash.h>

// XXH3 through the library's x86 dispatcher where it has one: the library is built for any
// x86-64 (SSE2), and the dispatcher picks AVX2 or AVX-512 on a CPU that has them at run time,
// which hashes twice as fast (64 MiB: 2.3 ms instead of 4.1 here).
//
// Its one-shot entry returns with the upper halves of the vector registers still in use (no
// `vzeroupper`), and from then on every SSE instruction of the process that follows — a
// program's own loops compiled for baseline x86-64 — waits on those halves: heat2d's stencil ran
// 3.5 times slower for the rest of the run after one hash of a 64 MiB state (a C loop: 5.5 ms,
// then 28 ms). So each call here ends with `vzeroupper` on a CPU with AVX.
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#include <cpuid.h>

/// Whether the CPU and the system support AVX (CPUID leaf 1: AVX and OSXSAVE), asked once.
static inline int lifeline_has_avx(void) {
    static int known = -1;  // a race writes the same value twice
    if (known < 0) {
        unsigned int a, b, c, d;
        known = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_AVX) && (c & bit_OSXSAVE) ? 1 : 0;
    }
    return known;
}

/// Marks the upper halves of the vector registers unused, where the CPU has them.
static inline void lifeline_clear_vector_upper(void) {
    if (lifeline_has_avx()) __asm__ volatile("vzeroupper" ::: "memory");
}

/// The XXH3-128 of `length` bytes at `input`, with the fastest vector unit this CPU has.
static inline XXH128_hash_t lifeline_xxh3_128(const void *input, size_t length) {
    XXH128_hash_t hash = XXH3_128bits_dispatch(input, length);
    lifeline_clear_vector_upper();
    return hash;
}

/// Adds `length` bytes at `input` to a streaming XXH3-128, as `lifeline_xxh3_128` hashes.
static inline XXH_errorcode lifeline_xxh3_128_update(XXH3_state_t *state, const void *input, size_t length) {
    XXH_errorcode result = XXH3_128bits_update_dispatch(state, input, length);
    lifeline_clear_vector_upper();
    return result;
}

/// Whether the upper halves of vector registers 0–15 are in use (XINUSE bits 2 and 6, from
/// XGETBV with ECX=1): 1 or 0, or -1 where the CPU cannot tell. For tests.
static inline int lifeline_vector_upper_in_use(void) {
    unsigned int a, b, c, d;
    if (!lifeline_has_avx() || !__get_cpuid_count(0xD, 1, &a, &b, &c, &d) || !(a & (1u << 2))) return -1;
    unsigned int low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(1));
    return (low & ((1u << 2) | (1u << 6))) ? 1 : 0;
}
#else
/// The XXH3-128 of `length` bytes at `input`.
static inline XXH128_hash_t lifeline_xxh3_128(const void *input, size_t length) {
    return XXH3_128bits(input, length);
}

/// Adds `length` bytes at `input` to a streaming XXH3-128.
static inline XXH_errorcode lifeline_xxh3_128_update(XXH3_state_t *state, const void *input, size_t length) {
    return XXH3_128bits_update(state, input, length);
}

/// Whether the upper halves of the vector registers are in use: -1, this CPU cannot tell.
static inline int lifeline_vector_upper_in_use(void) { return -1; }
#endif
