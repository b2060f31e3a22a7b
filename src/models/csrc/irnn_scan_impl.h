/*
 * Body of the IRNN scan for one element type; included by irnn_scan.c with
 *   T          the element type (float or double)
 *   SFX        suffix of the exported names (f32, f64)
 *   IT         the signed integer type of the same size (int32_t, int64_t)
 *   T_IS_FLOAT 1 for float (enables the AVX transpose)
 * Exported: irnn_forward_<SFX>, irnn_backward_<SFX> (see the end of this file).
 *
 * Recurrence along a sweep t = 0..n-1 (t = 0 is the border the sweep starts from):
 *   h_0 = relu(x_0) (border_relu = 1) or x_0 (border_relu = 0),   h_t = relu(w * h_{t-1} + b + x_t)
 * Backward, with G_t = dL/dh_t and g_t = dL/d(pre-activation at t):
 *   g_t = [h_t > 0] * (G_t + w * g_{t+1}),   dx_t += g_t,   (factor 1 at t = 0 when border_relu = 0)
 *   dw += sum_{t>0} g_t * h_{t-1},            db += sum_{t>0} g_t.
 */
#ifndef IRNN_CAT
#define IRNN_CAT_(a, b) a##_##b
#define IRNN_CAT(a, b) IRNN_CAT_(a, b)
#endif
#define FN(name) IRNN_CAT(name, SFX)

static inline T FN(relu)(T z) { return z > (T)0 ? z : (T)0; }

/* ---------- moving 8 rows in and out of the lane layout buf[j * LANES + k] ---------- */

/* The 8x8 transposes walk 8 rows at once in 32-byte steps, a pattern the hardware
 * prefetcher does not follow: first load one element per cache line of the block in
 * address order (independent loads, all in flight together), so the transposes hit L1.
 * Likewise ask for the destination lines (for writing) before transposing into them.
 * Measured 5-15 % off the scan at 64x64 (experiments/bench_spanet.py, IRNN rows). */
static inline void FN(touch)(const T *p, int64_t n) {
    T s = 0;
    for (int64_t j = 0; j < n; j += 64 / (int64_t)sizeof(T)) s += p[j];
    volatile T sink = s;
    (void)sink;
}

/* buf[j*LANES + k] = src[k*W + j] for rows k < R; lanes R..LANES-1 are zero. */
static void FN(rows_to_lanes)(const T *restrict src, int64_t W, int R, T *restrict buf) {
    int64_t j = 0;
    FN(touch)(src, R * W);
#if T_IS_FLOAT && defined(__AVX__)
    if (R == LANES)
        for (; j + 8 <= W; j += 8) transpose8x8_f32(src + j, W, buf + j * LANES, LANES);
#endif
    for (; j < W; ++j)
        for (int k = 0; k < LANES; ++k) buf[j * LANES + k] = k < R ? src[k * W + j] : (T)0;
}

/* dst[k*W + j] = buf[j*LANES + k] for rows k < R. */
static void FN(lanes_to_rows)(const T *restrict buf, int64_t W, int R, T *restrict dst) {
    int64_t j = 0;
    for (int64_t q = 0; q < R * W; q += 64 / (int64_t)sizeof(T)) __builtin_prefetch(dst + q, 1);
#if T_IS_FLOAT && defined(__AVX__)
    if (R == LANES)
        for (; j + 8 <= W; j += 8) transpose8x8_f32(buf + j * LANES, LANES, dst + j, W);
#endif
    for (; j < W; ++j)
        for (int k = 0; k < R; ++k) dst[k * W + j] = buf[j * LANES + k];
}

/* ---------- horizontal sweeps on 8 rows at once (lane layout) ---------- */

/* One vector = the LANES rows of a block at one column (GCC vector extension; the
 * compiler maps it to AVX / SSE / NEON registers). */
typedef T FN(vec) __attribute__((vector_size(LANES * sizeof(T)), may_alias));
typedef IT FN(ivec) __attribute__((vector_size(LANES * sizeof(T)), may_alias));
#define VEC FN(vec)
#define IVEC FN(ivec)
#define AT(buf, j) (*(VEC *)((buf) + (j) * LANES)) /* lane vector at column j */

/* relu of a lane vector: keep the lanes where z > 0 (z must be a plain variable) */
#define RELU_V(z) ((VEC)((IVEC)(z) & ((z) > (T)0)))

/* right: j = 0 -> W-1 into rt; left: j = W-1 -> 0 into lt. Both chains in one loop so
 * their latencies overlap. Buffers are 64-byte aligned. */
static void FN(lanes_forward)(const T *restrict xt, T *restrict rt, T *restrict lt, int64_t W,
                              T wr, T br, T wl, T bl, int border_relu) {
    VEC hr = AT(xt, 0), hl = AT(xt, W - 1);
    if (border_relu) {
        hr = RELU_V(hr);
        hl = RELU_V(hl);
    }
    AT(rt, 0) = hr;
    AT(lt, W - 1) = hl;
    for (int64_t n = 1; n < W; ++n) {
        const int64_t jr = n, jl = W - 1 - n;
        hr = wr * hr + (br + AT(xt, jr));
        hl = wl * hl + (bl + AT(xt, jl));
        AT(rt, jr) = hr = RELU_V(hr);
        AT(lt, jl) = hl = RELU_V(hl);
    }
}

/* Backward of lanes_forward. The right sweep's backward runs j = W-1 -> 0 and the left
 * one's j = 0 -> W-1, again in one loop. Writes g_right into gr_t and g_left into gl_t;
 * adds dw, db per lane into acc[0..3] = (dw_right, db_right, dw_left, db_left). */
static void FN(lanes_backward)(const T *restrict hr_t, const T *restrict Gr_t,
                               const T *restrict hl_t, const T *restrict Gl_t,
                               T *restrict gr_t, T *restrict gl_t, int64_t W, T wr, T wl,
                               VEC acc[4], int border_relu) {
    VEC gr = {0}, gl = {0};
    for (int64_t n = 0; n < W - 1; ++n) {
        const int64_t jr = W - 1 - n, jl = n;
        gr = AT(gr_t, jr) = (VEC)((IVEC)(AT(Gr_t, jr) + wr * gr) & (AT(hr_t, jr) > (T)0));
        gl = AT(gl_t, jl) = (VEC)((IVEC)(AT(Gl_t, jl) + wl * gl) & (AT(hl_t, jl) > (T)0));
        acc[0] += gr * AT(hr_t, jr - 1);
        acc[1] += gr;
        acc[2] += gl * AT(hl_t, jl + 1);
        acc[3] += gl;
    }
    /* position 0 of either sweep (right: column 0, left: column W-1): no predecessor, and
     * under the identity border rule no ReLU */
    VEC vr = AT(Gr_t, 0) + wr * gr, vl = AT(Gl_t, W - 1) + wl * gl;
    if (border_relu) {
        vr = (VEC)((IVEC)vr & (AT(hr_t, 0) > (T)0));
        vl = (VEC)((IVEC)vl & (AT(hl_t, W - 1) > (T)0));
    }
    AT(gr_t, 0) = vr;
    AT(gl_t, W - 1) = vl;
}

/* ---------- vertical sweeps, one row at a time, vectorised across the row ---------- */

static void FN(row_first)(const T *restrict x, T *restrict h, int64_t W, int border_relu) {
    if (!border_relu) {
        memcpy(h, x, (size_t)W * sizeof(T));
        return;
    }
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) h[j] = FN(relu)(x[j]);
}

static void FN(row_step)(const T *restrict x, const T *restrict hprev, T *restrict h, T w, T b,
                         int64_t W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) h[j] = FN(relu)(w * hprev[j] + b + x[j]);
}

/* One backward step of a vertical sweep: g holds g_{t+1} on entry and g_t on exit;
 * dx += g_t; if hprev (h_{t-1}) is given, accw += g_t * h_{t-1} and accb += g_t. Without
 * hprev the row is the sweep's border: its ReLU mask applies only when border_relu. */
static void FN(row_backward)(const T *restrict h, const T *restrict G, const T *restrict hprev,
                             T *restrict g, T w, T *restrict dx, T *restrict accw,
                             T *restrict accb, int64_t W, int border_relu) {
    if (!hprev && !border_relu) {
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
            g[j] = G[j] + w * g[j];
            dx[j] += g[j];
        }
        return;
    }
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
        const T v = G[j] + w * g[j]; /* computed unconditionally so the loop vectorises */
        g[j] = h[j] > (T)0 ? v : (T)0;
        dx[j] += g[j];
    }
    if (hprev)
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
            accw[j] += g[j] * hprev[j];
            accb[j] += g[j];
        }
}

static double FN(sum)(const T *v, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) s += v[i];
    return s;
}

/* ---------- one (b, c) plane ---------- */

/* Every pass reads and writes the (B, C, H, W) planes top to bottom, in address order:
 * the hardware prefetcher streams ascending addresses well and descending ones badly (a
 * plain loop over 6 planes ran at half the speed when it walked the rows upwards, and
 * software prefetching did not recover it). The sweeps that must run upwards work on
 * per-thread H x W scratch planes (in L2 at 64x64) that were filled, or are emptied,
 * in address order. */

/* Scratch: 3 * W * LANES + H * W elements. */
static void FN(forward_plane)(const T *restrict x, T *restrict up, T *restrict right,
                              T *restrict down, T *restrict left, int64_t H, int64_t W,
                              const T w[4], const T b[4], int border_relu, T *restrict scratch) {
    T *xt = scratch, *rt = xt + W * LANES, *lt = rt + W * LANES, *U = lt + W * LANES;
    /* pass 1, top to bottom, 8 rows at a time: right, left, down */
    for (int64_t r0 = 0; r0 < H; r0 += LANES) {
        const int R = H - r0 < LANES ? (int)(H - r0) : LANES;
        FN(rows_to_lanes)(x + r0 * W, W, R, xt);
        FN(lanes_forward)(xt, rt, lt, W, w[1], b[1], w[3], b[3], border_relu);
        FN(lanes_to_rows)(rt, W, R, right + r0 * W);
        FN(lanes_to_rows)(lt, W, R, left + r0 * W);
        for (int64_t i = r0; i < r0 + R; ++i) {
            if (i == 0)
                FN(row_first)(x, down, W, border_relu);
            else
                FN(row_step)(x + i * W, down + (i - 1) * W, down + i * W, w[2], b[2], W);
        }
    }
    /* pass 2, bottom to top: up into U (x is in cache), then U copied out top to bottom */
    FN(row_first)(x + (H - 1) * W, U + (H - 1) * W, W, border_relu);
    for (int64_t i = H - 2; i >= 0; --i)
        FN(row_step)(x + i * W, U + (i + 1) * W, U + i * W, w[0], b[0], W);
    memcpy(up, U, (size_t)(H * W) * sizeof(T));
}

/* Backward of one plane from x (the forward is recomputed, never read from memory: x is
 * one plane where the saved outputs would be four). Scratch: 7 * W * LANES + 3 * W + 2 H W
 * elements. dw and db receive this plane's sums.
 *   pass 0, top to bottom, 8 rows at a time: recompute right and left in the lane layout,
 *     run their backward and write dx; recompute down into S; copy down's gradient rows
 *     into D (they are needed bottom to top);
 *   pass A, bottom to top: backward of down from S and D (dx += ...), and the recomputation
 *     of up written over S row by row (down's row i is no longer needed once row i is done:
 *     the next row up needs rows i-1 and i-2);
 *   pass B, top to bottom: backward of up from S. */
static void FN(backward_plane)(const T *restrict x, const T *const G[4], T *restrict dx,
                               int64_t H, int64_t W, const T w[4], const T b[4], double dw[4],
                               double db[4], int border_relu, T *restrict scratch) {
    const int64_t WL = W * LANES;
    T *xt = scratch, *hr_t = xt + WL, *Gr_t = hr_t + WL, *hl_t = Gr_t + WL, *Gl_t = hl_t + WL;
    T *gr_t = Gl_t + WL, *gl_t = gr_t + WL;
    T *g = gl_t + WL, *accw = g + W, *accb = accw + W, *S = accb + W, *D = S + H * W;
    VEC acc[4] = {{0}};

    /* pass 0 */
    for (int64_t r0 = 0; r0 < H; r0 += LANES) {
        const int R = H - r0 < LANES ? (int)(H - r0) : LANES;
        FN(rows_to_lanes)(x + r0 * W, W, R, xt);
        FN(lanes_forward)(xt, hr_t, hl_t, W, w[1], b[1], w[3], b[3], border_relu);
        FN(rows_to_lanes)(G[1] + r0 * W, W, R, Gr_t);
        FN(rows_to_lanes)(G[3] + r0 * W, W, R, Gl_t);
        FN(lanes_backward)(hr_t, Gr_t, hl_t, Gl_t, gr_t, gl_t, W, w[1], w[3], acc, border_relu);
        for (int64_t i = 0; i < WL; ++i) gr_t[i] += gl_t[i];
        FN(lanes_to_rows)(gr_t, W, R, dx + r0 * W);
        for (int64_t i = r0; i < r0 + R; ++i) {
            if (i == 0)
                FN(row_first)(x, S, W, border_relu);
            else
                FN(row_step)(x + i * W, S + (i - 1) * W, S + i * W, w[2], b[2], W);
        }
        memcpy(D + r0 * W, G[2] + r0 * W, (size_t)(R * W) * sizeof(T));
    }

    /* pass A */
    memset(g, 0, 3 * (size_t)W * sizeof(T));
    for (int64_t i = H - 1; i >= 0; --i) {
        FN(row_backward)(S + i * W, D + i * W, i > 0 ? S + (i - 1) * W : NULL, g, w[2],
                         dx + i * W, accw, accb, W, border_relu);
        if (i == H - 1)
            FN(row_first)(x + i * W, S + i * W, W, border_relu);
        else
            FN(row_step)(x + i * W, S + (i + 1) * W, S + i * W, w[0], b[0], W);
    }
    dw[2] = FN(sum)(accw, W);
    db[2] = FN(sum)(accb, W);

    /* pass B */
    memset(g, 0, 3 * (size_t)W * sizeof(T));
    for (int64_t i = 0; i < H; ++i)
        FN(row_backward)(S + i * W, G[0] + i * W, i < H - 1 ? S + (i + 1) * W : NULL, g, w[0],
                         dx + i * W, accw, accb, W, border_relu);
    dw[0] = FN(sum)(accw, W);
    db[0] = FN(sum)(accb, W);

    dw[1] = FN(sum)((const T *)&acc[0], LANES);
    db[1] = FN(sum)((const T *)&acc[1], LANES);
    dw[3] = FN(sum)((const T *)&acc[2], LANES);
    db[3] = FN(sum)((const T *)&acc[3], LANES);
}

/* ---------- exported entry points ---------- */

/* out: (B, 4, C, H, W); border_relu: 1 for h_0 = relu(x_0), 0 for h_0 = x_0. Returns 0, or -1
 * if scratch memory could not be allocated. */
int FN(irnn_forward)(const T *x, const T *weight, const T *bias, T *out, int64_t B, int64_t C,
                     int64_t H, int64_t W, int border_relu, int nthreads) {
    const int64_t HW = H * W;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        T *scratch = alloc_scratch((3 * (size_t)W * LANES + (size_t)HW) * sizeof(T));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < B * C; ++p) {
            if (!scratch) continue;
            const int64_t bi = p / C, c = p % C;
            T w[4], b[4];
            for (int d = 0; d < 4; ++d) {
                w[d] = weight[d * C + c];
                b[d] = bias[d * C + c];
            }
            T *o = out + (bi * 4 * C + c) * HW; /* direction d at o + d * C * HW */
            FN(forward_plane)(x + p * HW, o, o + C * HW, o + 2 * C * HW, o + 3 * C * HW, H, W,
                              w, b, border_relu, scratch);
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

/* x, dx: (B, C, H, W); grad_h: (B, 4, C, H, W); dw_part, db_part: (B, 4, C) per-sample
 * sums (the caller sums over B). Returns 0, or -1 if scratch could not be allocated. */
int FN(irnn_backward)(const T *x, const T *grad_h, const T *weight, const T *bias, T *dx,
                      T *dw_part, T *db_part, int64_t B, int64_t C, int64_t H, int64_t W,
                      int border_relu, int nthreads) {
    const int64_t HW = H * W;
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        T *scratch = alloc_scratch((7 * (size_t)W * LANES + 3 * (size_t)W + 2 * (size_t)HW) * sizeof(T));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < B * C; ++p) {
            if (!scratch) continue;
            const int64_t bi = p / C, c = p % C;
            T w[4], b[4];
            const T *Gp[4];
            double dw[4], db[4];
            for (int d = 0; d < 4; ++d) {
                w[d] = weight[d * C + c];
                b[d] = bias[d * C + c];
                Gp[d] = grad_h + ((bi * 4 + d) * C + c) * HW;
            }
            FN(backward_plane)(x + p * HW, Gp, dx + p * HW, H, W, w, b, dw, db, border_relu, scratch);
            for (int d = 0; d < 4; ++d) {
                dw_part[(bi * 4 + d) * C + c] = (T)dw[d];
                db_part[(bi * 4 + d) * C + c] = (T)db[d];
            }
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

/* ---------- band sweeps for the memory-lean inference path ---------- */

/* Planes c = 0..C-1 of x (rows x W, row stride W) start at x + c * x_cs, those of the outputs at
 * out + c * o_cs. scale (may be NULL) is a rows x W map shared by all channels: what is written is h * scale,
 * the recurrence runs on h. Same arithmetic as the plane scan above, so the values are the same. */

/* out[i] = h_i * scale[i], where h_i is the vertical state at row i (h may alias nothing). */
static void FN(put_row)(const T *restrict h, const T *restrict s, T *restrict out, int64_t W) {
    if (!s) {
        memcpy(out, h, (size_t)W * sizeof(T));
        return;
    }
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) out[j] = h[j] * s[j];
}

static void FN(scale_row)(T *restrict o, const T *restrict s, int64_t W) {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) o[j] *= s[j];
}

/* One vertical direction over the rows of every plane: down (reverse = 0) from row 0, up from row rows-1.
 * init (C x W, may be NULL): the state before the first row, continuing a sweep that ended outside the band
 * (else the border rule); final (C x W, may be NULL) receives the state at row final_row. */
int FN(irnn_sweep_v)(const T *x, int64_t x_cs, T *out, int64_t o_cs, const T *scale, int64_t C, int64_t rows,
                     int64_t W, const T *w, const T *b, int reverse, int border_relu, const T *init, T *final,
                     int64_t final_row, int nthreads) {
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        T *buf = alloc_scratch(2 * (size_t)W * sizeof(T));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; ++c) {
            if (!buf) continue;
            const T *xc = x + c * x_cs;
            T *oc = out + c * o_cs, *h = buf, *prev = buf + W;
            for (int64_t n = 0; n < rows; ++n) {
                const int64_t i = reverse ? rows - 1 - n : n;
                if (n == 0 && !init)
                    FN(row_first)(xc + i * W, h, W, border_relu);
                else
                    FN(row_step)(xc + i * W, n == 0 ? init + c * W : prev, h, w[c], b[c], W);
                FN(put_row)(h, scale ? scale + i * W : NULL, oc + i * W, W);
                if (final && i == final_row) memcpy(final + c * W, h, (size_t)W * sizeof(T));
                T *t = prev;
                prev = h;
                h = t;
            }
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* Both horizontal directions of every plane, 8 rows at a time in the lane layout (as forward_plane):
 * right into right + c * o_cs, left into left + c * o_cs, scaled by scale_r / scale_l (may be NULL). */
int FN(irnn_sweep_h)(const T *x, int64_t x_cs, T *right, T *left, int64_t o_cs, const T *scale_r,
                     const T *scale_l, int64_t C, int64_t rows, int64_t W, const T *w, const T *b, int border_relu,
                     int nthreads) {
    int failed = 0;
#pragma omp parallel num_threads(nthreads)
    {
        T *scratch = alloc_scratch(3 * (size_t)W * LANES * sizeof(T));
        if (!scratch) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; ++c) {
            if (!scratch) continue;
            T *xt = scratch, *rt = xt + W * LANES, *lt = rt + W * LANES;
            T *rc = right + c * o_cs, *lc = left + c * o_cs;
            for (int64_t r0 = 0; r0 < rows; r0 += LANES) {
                const int R = rows - r0 < LANES ? (int)(rows - r0) : LANES;
                FN(rows_to_lanes)(x + c * x_cs + r0 * W, W, R, xt);
                FN(lanes_forward)(xt, rt, lt, W, w[c], b[c], w[C + c], b[C + c], border_relu);
                FN(lanes_to_rows)(rt, W, R, rc + r0 * W);
                FN(lanes_to_rows)(lt, W, R, lc + r0 * W);
                for (int64_t i = r0; i < r0 + R; ++i) {
                    if (scale_r) FN(scale_row)(rc + i * W, scale_r + i * W, W);
                    if (scale_l) FN(scale_row)(lc + i * W, scale_l + i * W, W);
                }
            }
        }
        free(scratch);
    }
    return failed ? -1 : 0;
}

#undef FN
#undef VEC
#undef IVEC
#undef AT
#undef RELU_V
