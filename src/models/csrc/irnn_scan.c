/*
 * IRNN scan of SPANet on the CPU: forward and hand-written backward of all four
 * directions, for float32 and float64. Built by src/models/irnn.py with gcc at first
 * use and called through ctypes; see that file for the maths and the Python API.
 *
 * Layout: x and dx are (B, C, H, W), h (the output) and grad_h are (B, 4, C, H, W) with directions
 * up, right, down, left; weight and bias are (4, C); all C-contiguous.
 *
 * How it stays close to memory bandwidth:
 *  - one OpenMP task per (b, c) plane, and every direction of a plane is done while the
 *    plane is in cache: x is read from memory once, each output written once;
 *  - vertical sweeps (up, down) go row by row, vectorised across the row;
 *  - horizontal sweeps (right, left) take 8 rows at a time, transpose them into a small
 *    buffer (8 rows become the 8 lanes of one vector), scan that buffer with vector
 *    operations and transpose the result back;
 *  - the backward reads x, not the four saved output planes, and recomputes the forward
 *    plane by plane while it is in cache (the compute is cheap; memory is not): forward
 *    and backward together move 11 planes of data per (b, c) instead of 14;
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __AVX__
#include <immintrin.h>
#endif

/* Rows handled together by the horizontal sweeps (lanes of the transposed buffer). */
#define LANES 8

static void *alloc_scratch(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

#ifdef __AVX__
/* In-register transpose of an 8x8 float block: rows src[r*src_stride .. +8] become
 * dst[c*dst_stride + r]. */
static inline void transpose8x8_f32(const float *src, ptrdiff_t src_stride, float *dst,
                                    ptrdiff_t dst_stride) {
    __m256 r0 = _mm256_loadu_ps(src + 0 * src_stride), r1 = _mm256_loadu_ps(src + 1 * src_stride);
    __m256 r2 = _mm256_loadu_ps(src + 2 * src_stride), r3 = _mm256_loadu_ps(src + 3 * src_stride);
    __m256 r4 = _mm256_loadu_ps(src + 4 * src_stride), r5 = _mm256_loadu_ps(src + 5 * src_stride);
    __m256 r6 = _mm256_loadu_ps(src + 6 * src_stride), r7 = _mm256_loadu_ps(src + 7 * src_stride);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * dst_stride, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * dst_stride, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dst_stride, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dst_stride, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dst_stride, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dst_stride, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dst_stride, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dst_stride, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* The same code for both element types: T is the type, SFX the name suffix. */
#define T float
#define IT int32_t
#define SFX f32
#define T_IS_FLOAT 1
#include "irnn_scan_impl.h"
#undef T
#undef IT
#undef SFX
#undef T_IS_FLOAT

#define T double
#define IT int64_t
#define SFX f64
#define T_IS_FLOAT 0
#include "irnn_scan_impl.h"
#undef T
#undef IT
#undef SFX
#undef T_IS_FLOAT
