/* dshub's native kernels. K-quants Q2_K, Q3_K, Q4_K, Q5_K and Q6_K without an importance matrix, byte-identical to
 * llama.cpp's reference quantizers (ggml-quants.c, quantize_row_q*_K_ref) and to dshub's torch port of them
 * (quant/gguf/kquants.py, kq_common.py), which is the specification this file follows.
 *
 * Why it is faster than the reference: ggml searches each 16- or 32-value group's scale with scalar float loops, one
 * group at a time. Here the eight (or sixteen) groups of one 256-value super-block are searched together, one group
 * per SIMD lane: every lane performs exactly the reference's float operations in the reference's order (sums stay
 * sequential per lane, no fused multiply-add, no reassociation), so each lane's result is the reference's bit for bit
 * while the super-block stays in registers and L1 for the whole candidate search.
 *
 * Build: a C compiler with GCC vector extensions (gcc, clang), -O2 -ffp-contract=off, never -ffast-math.
 * quant/gguf/native.py compiles this file on first use and checks the result against the torch reference.
 * Also block-FP8 dequantization to float32 (the GGUF converter's input) and to bf16 (the BF16 converter's output),
 * exactly as quant/fp8.py.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define QK_K 256

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f splat(float c) { v8f r = {c, c, c, c, c, c, c, c}; return r; }
static inline v8i splati(int32_t c) { v8i r = {c, c, c, c, c, c, c, c}; return r; }
/* lane-wise `mask ? a : b` (mask lanes are all ones or all zeros, as vector comparisons return) */
static inline v8f sel(v8i mask, v8f a, v8f b) { return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask)); }
static inline v8i seli(v8i mask, v8i a, v8i b) { return (a & mask) | (b & ~mask); }
static inline v8f vabs(v8f a) { return (v8f)((v8i)a & splati(0x7fffffff)); }
static inline v8f tof(v8i a) { return __builtin_convertvector(a, v8f); }
static inline int any(v8i m) {
    int32_t r = 0;
    for (int k = 0; k < 8; ++k) r |= m[k];
    return r != 0;
}

/* ggml's nearest_int: round half to even through the 1.5 * 2^23 trick (also its bits outside that domain). */
static inline int32_t nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}
static inline v8i vnearest(v8f v) {
    v8i i = (v8i)(v + splat(12582912.f));
    return (i & splati(0x007fffff)) - splati(0x00400000);
}
static inline v8i vclamp(v8i l, int32_t lo, int32_t hi) {
    l = seli(l < splati(lo), splati(lo), l);
    return seli(l > splati(hi), splati(hi), l);
}

/* IEEE half precision, round to nearest even (what F16C's conversion and ggml's software fallback give). */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* 65520 and up round to infinity */
    if (ax < 0x38800000u) {  /* below 2^-14: a subnormal half; adding 0.5 rounds to its 2^-24 unit */
        float a;
        memcpy(&a, &ax, 4);
        a += 0.5f;
        uint32_t b;
        memcpy(&b, &a, 4);
        return (uint16_t)(sign | (b - 0x3f000000u));
    }
    ax += 0xc8000000u + 0xfffu + ((ax >> 13) & 1u);  /* rebias the exponent (-112), round the dropped 13 bits */
    return (uint16_t)(sign | (ax >> 13));
}
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float r = (float)m * 5.9604644775390625e-08f;  /* m * 2^-24, exact */
        return sign ? -r : r;
    }
    bits = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112u) << 23) | (m << 13));
    float r;
    memcpy(&r, &bits, 4);
    return r;
}
static void put_f16(uint8_t * p, float v) { uint16_t h = f32_to_f16(v); p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }
static float get_f16(const uint8_t * p) { return f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* Eight groups of n values, lane k = group k, element i of every group in x[i]; group g of the source starts at
 * src + g * n. */
static void gather(const float * src, int n, v8f * x) {
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < 8; ++k) x[i][k] = src[k * n + i];
}

/* make_qkx2_quants on eight groups at once: scale and -min per lane, levels L[i] in 0..nmax. */
static void qkx2(int n, int nmax, const v8f * x, const v8f * w, v8i * L, v8i * Laux, v8f * out_scale,
                 v8f * out_min, float rmin, float rdelta, int nstep, int use_mad) {
    const v8f zero = splat(0.f);
    v8f mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; ++i) {
        mn = sel(x[i] < mn, x[i], mn);
        mx = sel(x[i] > mx, x[i], mx);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    mn = sel(mn > zero, zero, mn);
    const v8i live = ~(mx == mn);
    v8f iscale = splat((float)nmax) / (mx - mn);
    v8f scale = splat(1.f) / iscale;
    v8f best = zero;
    for (int i = 0; i < n; ++i) {
        v8i l = vclamp(vnearest(iscale * (x[i] - mn)), 0, nmax);
        L[i] = l;
        v8f diff = scale * tof(l) + mn - x[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best += w[i] * diff;
    }
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * (float)is + (float)nmax;
        iscale = splat(num) / (mx - mn);
        v8f sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            v8i l = vclamp(vnearest(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = l;
            v8f wl = w[i] * tof(l);
            sum_l += wl;
            sum_l2 += wl * tof(l);
            sum_xl += wl * x[i];
        }
        v8f D = sum_w * sum_l2 - sum_l * sum_l;
        v8f this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        v8f this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        v8i pos = this_min > zero;
        this_min = sel(pos, zero, this_min);
        this_scale = sel(pos, sum_xl / sum_l2, this_scale);
        v8f cur = zero;
        for (int i = 0; i < n; ++i) {
            v8f diff = this_scale * tof(Laux[i]) + this_min - x[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur += w[i] * diff;
        }
        v8i take = (D > zero) & (cur < best) & live;
        if (!any(take)) continue;
        for (int i = 0; i < n; ++i) L[i] = seli(take, Laux[i], L[i]);
        best = sel(take, cur, best);
        scale = sel(take, this_scale, scale);
        mn = sel(take, this_min, mn);
    }
    for (int i = 0; i < n; ++i) L[i] = seli(live, L[i], splati(0));
    *out_scale = sel(live, scale, zero);
    *out_min = -mn;
}

/* The opening that make_qx_quants and make_q3_quants share, on eight groups: the signed value of largest magnitude
 * (first on ties; nan never wins), levels at iscale = -nmax / max stored as l + offset, and the weighted sums with
 * weights x^2. Returns the lanes that are not all zero. */
static v8i first_levels(int n, int nmax, const v8f * x, v8i * L, int offset, v8f * mx_out, v8f * sumlx_out,
                        v8f * suml2_out) {
    const v8f zero = splat(0.f);
    v8f amax = zero, mx = zero;
    for (int i = 0; i < n; ++i) {
        v8f ax = vabs(x[i]);
        v8i gt = ax > amax;
        amax = sel(gt, ax, amax);
        mx = sel(gt, x[i], mx);
    }
    v8f iscale = splat(-(float)nmax) / mx;
    v8f sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        v8i l = vclamp(vnearest(iscale * x[i]), -nmax, nmax - 1);
        L[i] = l + splati(offset);
        v8f w = x[i] * x[i];
        sumlx += w * x[i] * tof(l);
        suml2 += w * tof(l) * tof(l);
    }
    *mx_out = mx;
    *sumlx_out = sumlx;
    *suml2_out = suml2;
    return ~(amax < splat(1e-15f));
}

/* make_qx_quants with rmse_type 1 (weights x^2) on eight groups: scale per lane, L[i] in 0..2*nmax-1. */
static void qx(int n, int nmax, const v8f * x, v8i * L, v8f * out_scale) {
    const v8f zero = splat(0.f);
    v8f mx, sumlx, suml2;
    const v8i live = first_levels(n, nmax, x, L, nmax, &mx, &sumlx, &suml2);
    v8f scale = sel(suml2 != zero, sumlx / suml2, zero);
    v8f best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        v8f iscale = splat(-((float)nmax + 0.1f * (float)is)) / mx;
        sumlx = zero;
        suml2 = zero;
        for (int i = 0; i < n; ++i) {
            v8i l = vclamp(vnearest(iscale * x[i]), -nmax, nmax - 1);
            v8f w = x[i] * x[i];
            sumlx += w * x[i] * tof(l);
            suml2 += w * tof(l) * tof(l);
        }
        v8i take = (suml2 > zero) & (sumlx * sumlx > best * suml2);
        if (!any(take)) continue;
        for (int i = 0; i < n; ++i) L[i] = seli(take, vclamp(vnearest(iscale * x[i]), -nmax, nmax - 1) + splati(nmax), L[i]);
        scale = sel(take, sumlx / suml2, scale);
        best = sel(take, scale * sumlx, best);
    }
    for (int i = 0; i < n; ++i) L[i] = seli(live, L[i], splati(0));
    *out_scale = sel(live, scale, zero);
}

/* make_q3_quants with do_rmse on eight groups: up to five coordinate-descent passes per lane (a lane whose pass changes
 * nothing would repeat it identically, which is why ggml stops it); scale per lane, L[i] in 0..2*nmax-1. */
static void q3(int n, int nmax, const v8f * x, v8i * L, v8f * out_scale) {
    const v8f zero = splat(0.f);
    v8f mx, sumlx, suml2;
    const v8i live = first_levels(n, nmax, x, L, 0, &mx, &sumlx, &suml2);
    for (int itry = 0; itry < 5; ++itry) {
        v8i changed = splati(0);
        for (int i = 0; i < n; ++i) {
            v8f w = x[i] * x[i], lf = tof(L[i]);
            v8f slx = sumlx - w * x[i] * lf;
            v8f sl2 = suml2 - w * lf * lf;
            v8i new_l = vclamp(vnearest(x[i] * sl2 / slx), -nmax, nmax - 1);
            v8f nf = tof(new_l);
            v8f slx2 = slx + w * x[i] * nf;
            v8f sl22 = sl2 + w * nf * nf;
            v8i ok = (slx > zero) & (new_l != L[i]) & (sl22 > zero) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22);
            L[i] = seli(ok, new_l, L[i]);
            sumlx = sel(ok, slx2, sumlx);
            suml2 = sel(ok, sl22, suml2);
            changed |= ok;
        }
        if (!any(changed)) break;
    }
    for (int i = 0; i < n; ++i) L[i] = seli(live, L[i] + splati(nmax), splati(0));
    *out_scale = sel(live, sumlx / suml2, zero);
}

/* ggml's final pass: L = clamp(nearest_int((x + dm) / d)) in each lane whose d is not zero. */
static void requant(int n, const v8f * x, v8f d, v8f dm, v8i * L, int lo, int hi) {
    v8i live = d != splat(0.f);
    for (int i = 0; i < n; ++i) L[i] = seli(live, vclamp(vnearest((x[i] + dm) / d), lo, hi), L[i]);
}

/* Levels of eight groups of n back to element order: flat[g * n + i]. */
static void scatter(const v8i * L, int n, uint8_t * flat) {
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < 8; ++k) flat[k * n + i] = (uint8_t)L[i][k];
}

/* Q4_K and Q5_K: eight groups of 32, 6-bit scales and mins against the block's maxima. Writes d, dmin, scales[12]
 * and returns the levels in L. */
static void qk_affine(const float * x, int nmax, float rmin, int nstep, uint8_t * y, uint8_t * Lflat) {
    v8f xt[32], wt[32];
    v8i L[32], Laux[32];
    gather(x, 32, xt);
    v8f sum_x2 = splat(0.f);
    for (int i = 0; i < 32; ++i) sum_x2 += xt[i] * xt[i];
    v8f av;
    for (int k = 0; k < 8; ++k) av[k] = sqrtf(sum_x2[k] / 32);
    for (int i = 0; i < 32; ++i) wt[i] = av + vabs(xt[i]);
    v8f scales, mins;
    qkx2(32, nmax, xt, wt, L, Laux, &scales, &mins, rmin, 0.1f, nstep, 0);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t * sc = y + 4;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    put_f16(y, max_scale / 63.f);
    put_f16(y + 2, max_min / 63.f);
    const float d16 = get_f16(y), dmin16 = get_f16(y + 2);
    v8f d, dm;
    for (int j = 0; j < 8; ++j) {
        uint8_t s, m;
        if (j < 4) {
            s = sc[j] & 63;
            m = sc[j + 4] & 63;
        } else {
            s = (uint8_t)((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4));
            m = (uint8_t)((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
        }
        d[j] = d16 * s;
        dm[j] = dmin16 * m;
    }
    requant(32, xt, d, dm, L, 0, nmax);
    scatter(L, 32, Lflat);
}

void dshub_quantize_q4_k(const float * x, uint8_t * y, int64_t nblocks) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nblocks; ++b, x += QK_K, y += 144) {
        qk_affine(x, 15, -1.f, 20, y, L);
        uint8_t * q = y + 16;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void dshub_quantize_q5_k(const float * x, uint8_t * y, int64_t nblocks) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nblocks; ++b, x += QK_K, y += 176) {
        qk_affine(x, 31, -0.5f, 15, y, L);
        uint8_t * qh = y + 16, * ql = y + 48;
        memset(qh, 0, QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

void dshub_quantize_q6_k(const float * x, uint8_t * y, int64_t nblocks) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nblocks; ++b, x += QK_K, y += 210) {
        v8f xt[2][16], scales[2];
        v8i Lv[2][16];
        float max_scale = 0, max_abs_scale = 0;
        for (int h = 0; h < 2; ++h) {
            gather(x + 128 * h, 16, xt[h]);
            qx(16, 32, xt[h], Lv[h], &scales[h]);
        }
        for (int ib = 0; ib < 16; ++ib) {
            float s = scales[ib / 8][ib % 8], as = fabsf(s);
            if (as > max_abs_scale) { max_abs_scale = as; max_scale = s; }
        }
        if (max_abs_scale < 1e-15f) {
            memset(y, 0, 210);
            continue;
        }
        uint8_t * ql = y, * qh = y + 128;
        int8_t * sc = (int8_t *)(y + 192);
        float iscale = -128.f / max_scale;
        put_f16(y + 208, 1 / iscale);
        const float d16 = get_f16(y + 208);
        for (int h = 0; h < 2; ++h) {
            v8f d;
            for (int k = 0; k < 8; ++k) {
                int32_t q = nearest_int(iscale * scales[h][k]);
                sc[8 * h + k] = (int8_t)(q < 127 ? q : 127);
                d[k] = d16 * sc[8 * h + k];
            }
            for (int i = 0; i < 16; ++i) Lv[h][i] -= splati(32);
            requant(16, xt[h], d, splat(0.f), Lv[h], -32, 31);
            for (int i = 0; i < 16; ++i) Lv[h][i] += splati(32);
            scatter(Lv[h], 16, L + 128 * h);
        }
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t *p = L + j + l;
                ql[l] = (uint8_t)((p[0] & 0xF) | ((p[64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((p[32] & 0xF) | ((p[96] & 0xF) << 4));
                qh[l] = (uint8_t)((p[0] >> 4) | ((p[32] >> 4) << 2) | ((p[64] >> 4) << 4) | ((p[96] >> 4) << 6));
            }
        }
    }
}

void dshub_quantize_q2_k(const float * x, uint8_t * y, int64_t nblocks) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nblocks; ++b, x += QK_K, y += 84) {
        v8f xt[2][16], wt[16], scales[2], mins[2];
        v8i Lv[2][16], Laux[16];
        for (int h = 0; h < 2; ++h) {
            gather(x + 128 * h, 16, xt[h]);
            for (int i = 0; i < 16; ++i) wt[i] = vabs(xt[h][i]);
            qkx2(16, 3, xt[h], wt, Lv[h], Laux, &scales[h], &mins[h], -0.5f, 0.1f, 15, 1);
        }
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; ++j) {
            if (scales[j / 8][j % 8] > max_scale) max_scale = scales[j / 8][j % 8];
            if (mins[j / 8][j % 8] > max_min) max_min = mins[j / 8][j % 8];
        }
        uint8_t * sc = y, * qs = y + 16;
        if (max_scale > 0) {
            float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; ++j) sc[j] = (uint8_t)nearest_int(iscale * scales[j / 8][j % 8]);
            put_f16(y + 80, max_scale / 15.f);
        } else {
            memset(sc, 0, 16);
            put_f16(y + 80, 0.f);
        }
        if (max_min > 0) {
            float iscale = 15.f / max_min;
            for (int j = 0; j < 16; ++j) sc[j] |= (uint8_t)(nearest_int(iscale * mins[j / 8][j % 8]) << 4);
            put_f16(y + 82, max_min / 15.f);
        } else {
            put_f16(y + 82, 0.f);
        }
        const float d16 = get_f16(y + 80), dmin16 = get_f16(y + 82);
        for (int h = 0; h < 2; ++h) {
            v8f d, dm;
            for (int k = 0; k < 8; ++k) {
                d[k] = d16 * (sc[8 * h + k] & 0xF);
                dm[k] = dmin16 * (sc[8 * h + k] >> 4);
            }
            requant(16, xt[h], d, dm, Lv[h], 0, 3);
            scatter(Lv[h], 16, L + 128 * h);
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

void dshub_quantize_q3_k(const float * x, uint8_t * y, int64_t nblocks) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < nblocks; ++b, x += QK_K, y += 110) {
        v8f xt[2][16], scales[2];
        v8i Lv[2][16];
        for (int h = 0; h < 2; ++h) {
            gather(x + 128 * h, 16, xt[h]);
            q3(16, 4, xt[h], Lv[h], &scales[h]);
        }
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; ++j) {
            float s = scales[j / 8][j % 8];
            if (fabsf(s) > amax) { amax = fabsf(s); max_scale = s; }
        }
        uint8_t * hmask = y, * qs = y + 32, * sc = y + 96;
        int32_t lsc[16] = {0};  /* the 6-bit scales as stored, minus 32 */
        memset(sc, 0, 12);
        if (max_scale != 0) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; ++j) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j / 8][j % 8]);
                l = (int8_t)((l < -32 ? -32 : l > 31 ? 31 : l) + 32);
                if (j < 8) sc[j] = (uint8_t)(l & 0xF);
                else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
                sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
                lsc[j] = l - 32;
            }
            put_f16(y + 108, 1 / iscale);
        } else {
            put_f16(y + 108, 0.f);
        }
        const float d16 = get_f16(y + 108);
        for (int h = 0; h < 2; ++h) {
            v8f d;
            for (int k = 0; k < 8; ++k) d[k] = d16 * (float)lsc[8 * h + k];
            for (int i = 0; i < 16; ++i) Lv[h][i] -= splati(4);
            requant(16, xt[h], d, splat(0.f), Lv[h], -4, 3);
            for (int i = 0; i < 16; ++i) Lv[h][i] += splati(4);
            scatter(Lv[h], 16, L + 128 * h);
        }
        memset(hmask, 0, 32);
        for (int j = 0; j < QK_K; ++j) {
            if (L[j] > 3) {
                hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] -= 4;
            }
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; ++l)
                qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

/* bf16 of a float32, round to nearest even; nan becomes 0xffff, as torch's conversion writes it (the self-test
 * checks this against torch on every load). */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return 0xffffu;
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
static inline float as_f32(float f) { return f; }

/* Block-FP8 dequantization: out[r][c] = lut[w[r][c]] * scale[r / br][c / bc], one rounding (the product), as
 * quant/fp8.py computes it, then stored as float32 (exact) or rounded to bf16 (the BF16 converter's output). `lut`
 * holds the exact float32 value of each byte (from torch's conversion); the 1 KiB table stays in L1 and the output is
 * written once, where the torch path makes several passes. */
#define FP8_BLOCK_DEQUANT(NAME, OUT_T, CONVERT)                                                                   \
    void NAME(const uint8_t * w, const float * lut, const float * scale, OUT_T * out, int64_t rows, int64_t cols,  \
              int64_t br, int64_t bc, int64_t scale_cols) {                                                        \
        for (int64_t r = 0; r < rows; ++r) {                                                                       \
            const uint8_t * wr = w + r * cols;                                                                     \
            const float * sr = scale + (r / br) * scale_cols;                                                      \
            OUT_T * o = out + r * cols;                                                                            \
            for (int64_t c0 = 0, j = 0; c0 < cols; c0 += bc, ++j) {                                                \
                const float s = sr[j];                                                                             \
                const int64_t c1 = c0 + bc < cols ? c0 + bc : cols;                                                \
                for (int64_t c = c0; c < c1; ++c) o[c] = CONVERT(lut[wr[c]] * s);                                  \
            }                                                                                                      \
        }                                                                                                          \
    }
FP8_BLOCK_DEQUANT(dshub_fp8_block_dequant_f32, float, as_f32)
FP8_BLOCK_DEQUANT(dshub_fp8_block_dequant_bf16, uint16_t, f32_to_bf16)

/* The layout this build agrees to: bumped whenever a function's signature or meaning changes. */
int dshub_kq_abi(void) { return 4; }
