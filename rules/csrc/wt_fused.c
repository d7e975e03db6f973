/*
 * Fused CPU inference kernels for the Weight Transformer (neuralgraph.rules.native).
 *
 * Plain C99, no Python or torch headers: built at first use by neuralgraph/native.py with the
 * system C compiler (-O3 -march=native) and called through ctypes with tensors' data pointers.
 * Each call handles the edges [e0, e1); callers run disjoint ranges on several threads.
 *
 * Edges are processed in tiles of TILE edges kept "structure of arrays": a width-K quantity of a
 * tile is a [K][TILE] block, so every per-edge matrix product is a loop over the tile's lanes
 * that the compiler vectorises (one SIMD register holds the same feature of TILE edges).
 *
 * The maths is that of WeightTransformer's docstring; the reference (and the check for every
 * line here) is the PyTorch path in rules/weight_transformer.py and neuralgraph.reference.
 *
 *   pass 1 (wt_keys):   k, v = kv([w, h]); phi; RoPE; per-node S += R phi(k) v^T, z += phi(k)
 *   pass 2 (wt_update): q, u = qu([w, h]); phi; RoPE; a = (R phi(q))^T S / (phi(q)^T z + eps);
 *                       z = u + proj(a); z += FF(LN(z)); out = s tanh(head(LN(z)))
 *
 * Node states hold only the heads' diagonal d x d blocks: S [N][heads][d][d], z [N][D].
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef TILE
#define TILE 16
#endif
#define T TILE
#define MAXW 512 /* widest per-edge vector (4 D, 1 + H, ff, head width) the kernels accept */

typedef struct {
    int64_t H, heads, d, D, FF, HW; /* hidden, heads, head_dim, heads*head_dim, ff, head width */
    int64_t npos, naxes;            /* rows of the RoPE tables, columns of edge_pos */
    float eps, eps1, eps2, scale;   /* attention eps, LayerNorm eps (1, 2), update scale */
    int32_t normalize, pad;
    const int64_t *head_axes;       /* [heads]: edge_pos column each head rotates by, -1 = none */
    const float *cos_tab, *sin_tab; /* [npos][d/2] */
    const float *kv_w, *kv_b, *qu_w, *qu_b, *proj_w, *proj_b, *ln1_g, *ln1_b, *ff1_w, *ff1_b,
        *ff2_w, *ff2_b, *ln2_g, *ln2_b, *hd1_w, *hd1_b, *out_w, *out_b;
} WTParams;

int ng_wt_abi_version(void) { return 5; }
int ng_wt_tile(void) { return TILE; }
int ng_wt_max_width(void) { return MAXW; }

/* ---------------------------------------------------------------------------- elementwise */

/* exp(x), float accuracy (~2 ulp), branch-free so that loops over a tile vectorise. */
static inline float ng_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x); /* (fminf/fmaxf block vectorisation) */
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (rintf blocks vectorisation) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    union { int32_t i; float f; } s;
    s.i = ((int32_t)n + 127) << 23;
    return p * s.f;
}

/* phi = elu + 1 */
static inline float ng_phi(float x) { return x > 0.0f ? x + 1.0f : ng_exp(x); }

/* erf(x), absolute error < 5e-7 in float: an odd/even rational function of x on [-4, 4] (erf is
 * +-1 in float outside), the approximation Eigen uses; no exp, one division, vectorises. */
static inline float ng_erf(float x) {
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    const float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = fmaf(x2, p, 2.77068142495902e-08f);
    p = fmaf(x2, p, -2.10102402082508e-06f);
    p = fmaf(x2, p, -5.69250639462346e-05f);
    p = fmaf(x2, p, -7.34990630326855e-04f);
    p = fmaf(x2, p, -2.95459980854025e-03f);
    p = fmaf(x2, p, -1.60960333262415e-02f);
    float q = -1.45660718464996e-05f;
    q = fmaf(x2, q, -2.13374055278905e-04f);
    q = fmaf(x2, q, -1.68282697438203e-03f);
    q = fmaf(x2, q, -7.37332916720468e-03f);
    q = fmaf(x2, q, -1.42647390514189e-02f);
    return x * p / q;
}

/* exact (erf) GELU, as torch.nn.GELU() */
static inline float ng_gelu(float x) { return 0.5f * x * (1.0f + ng_erf(x * 0.70710678118654752f)); }

/* ---------------------------------------------------------------------------- tile algebra */

/* one tile row: o += a * b (lane-wise) and o += a * s; restrict lets the lane loop vectorise */
static inline void row_fma(float *restrict o, const float *restrict a, const float *restrict b) {
    for (int t = 0; t < T; t++) o[t] = fmaf(a[t], b[t], o[t]);
}

static inline void row_fma_s(float *restrict o, const float *restrict a, const float s) {
    for (int t = 0; t < T; t++) o[t] = fmaf(a[t], s, o[t]);
}

/* y[N][T] = b + W x, W [N][K] row-major (nn.Linear layout), x [K][T]. */
static void mm(const float *restrict W, const float *restrict b, const float *restrict x,
               float *restrict y, int64_t N, int64_t K) {
    int64_t j = 0;
    for (; j + 4 <= N; j += 4) {
        float a0[T], a1[T], a2[T], a3[T];
        const float *w0 = W + j * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        for (int t = 0; t < T; t++) {
            a0[t] = b[j];
            a1[t] = b[j + 1];
            a2[t] = b[j + 2];
            a3[t] = b[j + 3];
        }
        for (int64_t k = 0; k < K; k++) {
            const float *xk = x + k * T;
            const float c0 = w0[k], c1 = w1[k], c2 = w2[k], c3 = w3[k];
            for (int t = 0; t < T; t++) {
                const float xv = xk[t];
                a0[t] = fmaf(c0, xv, a0[t]);
                a1[t] = fmaf(c1, xv, a1[t]);
                a2[t] = fmaf(c2, xv, a2[t]);
                a3[t] = fmaf(c3, xv, a3[t]);
            }
        }
        memcpy(y + j * T, a0, sizeof a0);
        memcpy(y + (j + 1) * T, a1, sizeof a1);
        memcpy(y + (j + 2) * T, a2, sizeof a2);
        memcpy(y + (j + 3) * T, a3, sizeof a3);
    }
    for (; j < N; j++) {
        float a0[T];
        const float *w0 = W + j * K;
        for (int t = 0; t < T; t++) a0[t] = b[j];
        for (int64_t k = 0; k < K; k++) {
            const float *xk = x + k * T;
            const float c0 = w0[k];
            for (int t = 0; t < T; t++) a0[t] = fmaf(c0, xk[t], a0[t]);
        }
        memcpy(y + j * T, a0, sizeof a0);
    }
}

/* LayerNorm over the K rows of x [K][T], in place into y. */
static void layer_norm(const float *restrict x, float *restrict y, const float *g, const float *b,
                       int64_t K, float eps) {
    float mean[T], var[T];
    for (int t = 0; t < T; t++) mean[t] = 0.0f, var[t] = 0.0f;
    for (int64_t k = 0; k < K; k++)
        for (int t = 0; t < T; t++) mean[t] += x[k * T + t];
    for (int t = 0; t < T; t++) mean[t] /= (float)K;
    for (int64_t k = 0; k < K; k++)
        for (int t = 0; t < T; t++) {
            const float c = x[k * T + t] - mean[t];
            var[t] = fmaf(c, c, var[t]);
        }
    for (int t = 0; t < T; t++) var[t] = 1.0f / sqrtf(var[t] / (float)K + eps);
    for (int64_t k = 0; k < K; k++)
        for (int t = 0; t < T; t++) y[k * T + t] = fmaf((x[k * T + t] - mean[t]) * var[t], g[k], b[k]);
}

/* lanes in use in the tile starting at edge s of a range ending at e1 */
static inline int tile_len(int64_t s, int64_t e1) { return (int)((e1 - s) < T ? (e1 - s) : T); }

/* x [1+H][T] from weights and row-major hidden states of edges e0 .. e0+n (n <= T; rest zero). */
static void load_state(int64_t H, int64_t e0, int n, const float *w, const float *hid, float *restrict x) {
    memset(x, 0, sizeof(float) * (size_t)((1 + H) * T));
    for (int t = 0; t < n; t++) {
        x[t] = w[e0 + t];
        const float *h = hid + (e0 + t) * H;
        for (int64_t k = 0; k < H; k++) x[(1 + k) * T + t] = h[k];
    }
}

/* the [D][T] tile's lanes [0, n) as n contiguous rows of D (transposed in L1, then copied) */
static void store_rows(const float *restrict tile, int n, int64_t D, float *out) {
    float rows[MAXW * T];
    for (int t = 0; t < T; t++)
        for (int64_t c = 0; c < D; c++) rows[t * D + c] = tile[c * T + t];
    memcpy(out, rows, sizeof(float) * (size_t)(n * D));
}

/* (r0 + i r1) = (x0 + i x1)(c + i s), lane-wise */
static inline void rotate(const float *restrict x0, const float *restrict x1, const float *restrict c,
                          const float *restrict sn, float *restrict r0, float *restrict r1) {
    for (int t = 0; t < T; t++) {
        r0[t] = x0[t] * c[t] - x1[t] * sn[t];
        r1[t] = x0[t] * sn[t] + x1[t] * c[t];
    }
}

/* phi of rows [0, 2D) of y into f (unrotated) and their RoPE rotation into r; rows [0, D) are the
 * forward and [D, 2D) the backward query/key, both rotated by the same per-head position. */
static void phi_rope(const WTParams *p, int64_t e0, int n, const int64_t *pos, const float *y,
                     float *restrict f, float *restrict r) {
    const int64_t D = p->D, d = p->d, d2 = p->d / 2;
    for (int64_t k = 0; k < 2 * D; k++)
        for (int t = 0; t < T; t++) f[k * T + t] = ng_phi(y[k * T + t]);
    for (int64_t i = 0; i < p->heads; i++) {
        const int64_t axis = p->head_axes[i];
        int64_t row[T];
        for (int t = 0; t < T; t++) {
            int64_t pp = (axis >= 0 && t < n) ? pos[(e0 + t) * p->naxes + axis] : 0;
            row[t] = (pp >= 0 && pp < p->npos) ? pp * d2 : 0; /* positions checked by the caller */
        }
        for (int64_t j = 0; j < d2; j++) {
            float c[T], sn[T];
            for (int t = 0; t < T; t++) c[t] = p->cos_tab[row[t] + j], sn[t] = p->sin_tab[row[t] + j];
            for (int64_t half = 0; half < 2; half++) {
                const int64_t k0 = half * D + i * d + 2 * j;
                rotate(f + k0 * T, f + (k0 + 1) * T, c, sn, r + k0 * T, r + (k0 + 1) * T);
            }
        }
    }
}

/* ---------------------------------------------------------------------------- slot caches
 *
 * Scattering a tile's per-edge states to nodes lane by lane is scalar work; but in a dense layer
 * the tiles of every row repeat the same node vectors (lane t of the tile at column c0 is node
 * c0 + t for the source; all lanes are node o for the target).  A slot cache keyed on a tile's
 * node vector keeps one [W][T] accumulator per distinct vector: a hit is a vectorised
 * accumulate, and each slot is scattered lane by lane only when evicted or at the end.  Pass 2
 * likewise caches node states gathered into [W][T] tiles, so attention is lane-wise arithmetic.
 * Only the summation order differs from a lane-by-lane scatter. */

#define NSLOT 512

typedef struct {
    int64_t W;        /* rows per slot: heads*d*d state entries, then D normaliser entries */
    int64_t *nodes;   /* [NSLOT][T] */
    int32_t *n;       /* [NSLOT]: lanes in use, 0 = empty */
    float *acc;       /* [NSLOT][W][T] */
} Cache;

static int cache_init(Cache *c, int64_t W) {
    c->W = W;
    c->nodes = (int64_t *)malloc(sizeof(int64_t) * NSLOT * T);
    c->n = (int32_t *)calloc(NSLOT, sizeof(int32_t));
    c->acc = (float *)malloc(sizeof(float) * (size_t)(NSLOT * W * T));
    return c->nodes && c->n && c->acc;
}

static void cache_free(Cache *c) {
    free(c->nodes);
    free(c->n);
    free(c->acc);
}

/* The slot of a tile's node vector; *hit says whether it already holds that vector. */
static int64_t cache_slot(const Cache *c, const int64_t *node, int n, int *hit) {
    uint64_t h = (uint64_t)node[0] * 0x9E3779B97F4A7C15ull ^ ((uint64_t)node[n - 1] + (uint64_t)n) * 0xC2B2AE3D27D4EB4Full;
    const int64_t slot = (int64_t)(h >> 55) & (NSLOT - 1);
    int same = c->n[slot] == n;
    for (int t = 0; same && t < n; t++) same = c->nodes[slot * T + t] == node[t];
    *hit = same;
    return slot;
}

/* Scatter a slot's accumulator lane by lane into S [V][hdd] / z [V][D] and empty it. */
static void cache_flush(const WTParams *p, Cache *c, int64_t slot, float *S, float *z) {
    const int64_t hdd = p->heads * p->d * p->d, D = p->D;
    const float *acc = c->acc + slot * c->W * T;
    for (int t = 0; t < c->n[slot]; t++) {
        const int64_t m = c->nodes[slot * T + t];
        float *Sm = S + m * hdd, *zm = z + m * D;
        for (int64_t r = 0; r < hdd; r++) Sm[r] += acc[r * T + t];
        for (int64_t r = 0; r < D; r++) zm[r] += acc[(hdd + r) * T + t];
    }
    c->n[slot] = 0;
}

static void cache_flush_all(const WTParams *p, Cache *c, float *S, float *z) {
    for (int64_t slot = 0; slot < NSLOT; slot++)
        if (c->n[slot]) cache_flush(p, c, slot, S, z);
}

/* Add a tile's kr v^T (heads' diagonal blocks) and k to its nodes' states through the cache. */
static void scatter(const WTParams *p, Cache *c, int64_t e0, int n, const int64_t *node,
                    const float *kr, const float *k, const float *v, float *S, float *z) {
    const int64_t d = p->d, D = p->D, hdd = p->heads * p->d * p->d;
    int hit;
    const int64_t slot = cache_slot(c, node + e0, n, &hit);
    float *acc = c->acc + slot * c->W * T;
    if (!hit) {
        if (c->n[slot]) cache_flush(p, c, slot, S, z);
        memset(acc, 0, sizeof(float) * (size_t)(c->W * T));
        for (int t = 0; t < n; t++) c->nodes[slot * T + t] = node[e0 + t];
        c->n[slot] = n;
    }
    for (int64_t i = 0; i < p->heads; i++)
        for (int64_t a = 0; a < d; a++) {
            const float *ka = kr + (i * d + a) * T;
            for (int64_t b = 0; b < d; b++) row_fma(acc + ((i * d + a) * d + b) * T, ka, v + (i * d + b) * T);
        }
    float *oz = acc + hdd * T;
    for (int64_t r = 0; r < D * T; r++) oz[r] += k[r];
}

/* a[D][T] = (qr^T S[node]) / (q^T z[node] + eps) per head (lanes >= n: garbage, never stored).
 * G [W][T] holds the lanes' node states (from the cache; filled on a miss). */
static void contract(const WTParams *p, Cache *c, int64_t e0, int n, const int64_t *node,
                     const float *qr, const float *q, const float *S, const float *z,
                     float *restrict a) {
    const int64_t d = p->d, D = p->D, hdd = p->heads * p->d * p->d;
    int same = 1;
    for (int t = 1; t < n; t++) same &= node[e0 + t] == node[e0];
    if (same) { /* one node: its state is a broadcast matrix (no gather needed) */
        const float *Sm = S + node[e0] * hdd, *zm = z + node[e0] * D;
        for (int64_t i = 0; i < p->heads; i++) {
            float den[T], acc[T];
            memset(den, 0, sizeof den);
            for (int64_t cc = 0; cc < d; cc++) row_fma_s(den, q + (i * d + cc) * T, zm[i * d + cc]);
            for (int t = 0; t < T; t++) den[t] = p->normalize ? 1.0f / (den[t] + p->eps) : 1.0f;
            for (int64_t b = 0; b < d; b++) {
                memset(acc, 0, sizeof acc);
                for (int64_t cc = 0; cc < d; cc++) row_fma_s(acc, qr + (i * d + cc) * T, Sm[(i * d + cc) * d + b]);
                for (int t = 0; t < T; t++) a[(i * d + b) * T + t] = acc[t] * den[t];
            }
        }
        return;
    }
    int hit;
    const int64_t slot = cache_slot(c, node + e0, n, &hit);
    float *G = c->acc + slot * c->W * T;
    if (!hit) {
        for (int t = 0; t < n; t++) c->nodes[slot * T + t] = node[e0 + t];
        c->n[slot] = n;
        for (int t = 0; t < T; t++) {
            const int64_t m = node[e0 + (t < n ? t : 0)];
            const float *Sm = S + m * hdd, *zm = z + m * D;
            for (int64_t r = 0; r < hdd; r++) G[r * T + t] = Sm[r];
            for (int64_t r = 0; r < D; r++) G[(hdd + r) * T + t] = zm[r];
        }
    }
    for (int64_t i = 0; i < p->heads; i++) {
        float den[T], acc[T];
        memset(den, 0, sizeof den);
        for (int64_t cc = 0; cc < d; cc++) row_fma(den, q + (i * d + cc) * T, G + (hdd + i * d + cc) * T);
        for (int t = 0; t < T; t++) den[t] = p->normalize ? 1.0f / (den[t] + p->eps) : 1.0f;
        for (int64_t b = 0; b < d; b++) {
            memset(acc, 0, sizeof acc);
            for (int64_t cc = 0; cc < d; cc++) row_fma(acc, qr + (i * d + cc) * T, G + ((i * d + cc) * d + b) * T);
            for (int t = 0; t < T; t++) a[(i * d + b) * T + t] = acc[t] * den[t];
        }
    }
}

/* End of a pass 1: scatter what the caches still hold (if the workspace was allocated), free them. */
static int finish_scatter(const WTParams *p, int ok, Cache *cf, Cache *cb, float *Sf, float *zf,
                          float *Sb, float *zb) {
    if (ok) {
        cache_flush_all(p, cf, Sf, zf);
        cache_flush_all(p, cb, Sb, zb);
    }
    cache_free(cf);
    cache_free(cb);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------------------- entry points
 * Each returns 0, or -1 when its workspace cannot be allocated. */

/* Pass 1 over edges [e0, e1): add keys/values to Sf/zf (by source) and Sb/zb (by target).
 * nw (NULL: none) is the graph's neighbour_weight [E][2]: phi(k) of edge e, rotated or not, counts
 * nw[e][0] times in its source's forward sums and nw[e][1] times in its target's backward sums. */
int ng_wt_keys(const WTParams *p, int64_t e0, int64_t e1, const float *w, const float *hid,
               const int64_t *src, const int64_t *dst, const int64_t *pos, const float *nw, float *Sf,
               float *zf, float *Sb, float *zb) {
    const int64_t D = p->D, W = p->heads * p->d * p->d + p->D;
    float x[MAXW * T], kv[MAXW * T], f[MAXW * T], r[MAXW * T];
    Cache cf, cb;
    int ok = cache_init(&cf, W) & cache_init(&cb, W);
    if (ok) {
        for (int64_t s = e0; s < e1; s += T) {
            const int n = tile_len(s, e1);
            load_state(p->H, s, n, w, hid, x);
            mm(p->kv_w, p->kv_b, x, kv, 4 * D, 1 + p->H);
            phi_rope(p, s, n, pos, kv, f, r);
            if (nw) {
                float m[2][T];
                for (int t = 0; t < T; t++) {
                    m[0][t] = t < n ? nw[2 * (s + t)] : 0.0f;
                    m[1][t] = t < n ? nw[2 * (s + t) + 1] : 0.0f;
                }
                for (int64_t k = 0; k < 2 * D; k++) {
                    const float *mk = m[k >= D];
                    for (int t = 0; t < T; t++) f[k * T + t] *= mk[t], r[k * T + t] *= mk[t];
                }
            }
            scatter(p, &cf, s, n, src, r, f, kv + 2 * D * T, Sf, zf);
            scatter(p, &cb, s, n, dst, r + D * T, f + D * T, kv + 3 * D * T, Sb, zb);
        }
    }
    return finish_scatter(p, ok, &cf, &cb, Sf, zf, Sb, zb);
}

/* Pass 2 over edges [e0, e1): out [E][1+H] rows e0 .. e1 (dw, dh) from the finished states. */
int ng_wt_update(const WTParams *p, int64_t e0, int64_t e1, const float *w, const float *hid,
                 const int64_t *src, const int64_t *dst, const int64_t *pos, const float *Sf,
                 const float *zf, const float *Sb, const float *zb, float *out) {
    const int64_t D = p->D, H = p->H, W = p->heads * p->d * p->d + p->D;
    float x[MAXW * T], qu[MAXW * T], f[MAXW * T], r[MAXW * T], att[MAXW * T], z[MAXW * T],
        y[MAXW * T], hh[MAXW * T];
    Cache cf, cb;
    int ok = cache_init(&cf, W) & cache_init(&cb, W);
    for (int64_t s = e0; ok && s < e1; s += T) {
        const int n = tile_len(s, e1);
        load_state(p->H, s, n, w, hid, x);
        mm(p->qu_w, p->qu_b, x, qu, 3 * D, 1 + H);
        phi_rope(p, s, n, pos, qu, f, r);
        /* forward attention reads the target's state, backward the source's */
        contract(p, &cf, s, n, dst, r, f, Sf, zf, att);
        contract(p, &cb, s, n, src, r + D * T, f + D * T, Sb, zb, att + D * T);
        mm(p->proj_w, p->proj_b, att, z, D, 2 * D); /* proj([a_f, a_b]) */
        for (int64_t k = 0; k < D * T; k++) z[k] += qu[2 * D * T + k]; /* + u */
        layer_norm(z, y, p->ln1_g, p->ln1_b, D, p->eps1);
        mm(p->ff1_w, p->ff1_b, y, hh, p->FF, D);
        for (int64_t k = 0; k < p->FF * T; k++) hh[k] = ng_gelu(hh[k]);
        mm(p->ff2_w, p->ff2_b, hh, y, D, p->FF);
        for (int64_t k = 0; k < D * T; k++) z[k] += y[k];
        layer_norm(z, y, p->ln2_g, p->ln2_b, D, p->eps2);
        mm(p->hd1_w, p->hd1_b, y, hh, p->HW, D);
        for (int64_t k = 0; k < p->HW * T; k++) hh[k] = ng_gelu(hh[k]);
        mm(p->out_w, p->out_b, hh, y, 1 + H, p->HW);
        for (int64_t k = 0; k < (1 + H) * T; k++) {
            const float e = ng_exp(-2.0f * y[k]);
            y[k] = p->scale * (2.0f / (1.0f + e) - 1.0f); /* s tanh */
        }
        store_rows(y, n, 1 + H, out + s * (1 + H));
    }
    cache_free(&cf);
    cache_free(&cb);
    return ok ? 0 : -1;
}

/* rows [0, n) of the [D][T] tile from an [E][D] array with row stride ld at edge s (other lanes
 * zero) */
static void load_rows(const float *in, int64_t ld, int64_t s, int n, int64_t D, float *restrict tile) {
    float rows[MAXW * T]; /* whole rows first (contiguous vector loads), then transposed in L1 */
    for (int t = 0; t < n; t++) memcpy(rows + t * D, in + (s + t) * ld, sizeof(float) * (size_t)D);
    if (n < T) memset(rows + n * D, 0, sizeof(float) * (size_t)((T - n) * D));
    for (int64_t c = 0; c < D; c++)
        for (int t = 0; t < T; t++) tile[c * T + t] = rows[t * D + c];
}

/* Attention alone (benchmark): pass 1 from precomputed rotated/unrotated phi(k) and v, each
 * [E][D] with row strides ld[6] (krf, kf, vf, krb, kb, vb), forward and backward kinds apart. */
int ng_attn_keys(const WTParams *p, int64_t e0, int64_t e1, const float *krf, const float *kf,
                 const float *vf, const float *krb, const float *kb, const float *vb,
                 const int64_t *ld, const int64_t *src, const int64_t *dst, float *Sf, float *zf,
                 float *Sb, float *zb) {
    const int64_t D = p->D, W = p->heads * p->d * p->d + p->D;
    float kr[MAXW * T], k[MAXW * T], v[MAXW * T];
    Cache cf, cb;
    int ok = cache_init(&cf, W) & cache_init(&cb, W);
    if (ok) {
        for (int64_t s = e0; s < e1; s += T) {
            const int n = tile_len(s, e1);
            load_rows(krf, ld[0], s, n, D, kr), load_rows(kf, ld[1], s, n, D, k), load_rows(vf, ld[2], s, n, D, v);
            scatter(p, &cf, s, n, src, kr, k, v, Sf, zf);
            load_rows(krb, ld[3], s, n, D, kr), load_rows(kb, ld[4], s, n, D, k), load_rows(vb, ld[5], s, n, D, v);
            scatter(p, &cb, s, n, dst, kr, k, v, Sb, zb);
        }
    }
    return finish_scatter(p, ok, &cf, &cb, Sf, zf, Sb, zb);
}

/* Attention alone, pass 2: af, ab [E][D] (row-major) rows e0 .. e1; ld[4]: row strides of
 * qrf, qf, qrb, qb. */
int ng_attn_contract(const WTParams *p, int64_t e0, int64_t e1, const float *qrf, const float *qf,
                     const float *qrb, const float *qb, const int64_t *ld, const int64_t *src,
                     const int64_t *dst,
                     const float *Sf, const float *zf, const float *Sb, const float *zb, float *af,
                     float *ab) {
    const int64_t D = p->D, W = p->heads * p->d * p->d + p->D;
    float qr[MAXW * T], q[MAXW * T], a[MAXW * T];
    Cache cf, cb;
    int ok = cache_init(&cf, W) & cache_init(&cb, W);
    for (int64_t s = e0; ok && s < e1; s += T) {
        const int n = tile_len(s, e1);
        load_rows(qrf, ld[0], s, n, D, qr), load_rows(qf, ld[1], s, n, D, q);
        contract(p, &cf, s, n, dst, qr, q, Sf, zf, a);
        store_rows(a, n, D, af + s * D);
        load_rows(qrb, ld[2], s, n, D, qr), load_rows(qb, ld[3], s, n, D, q);
        contract(p, &cb, s, n, src, qr, q, Sb, zb, a);
        store_rows(a, n, D, ab + s * D);
    }
    cache_free(&cf);
    cache_free(&cb);
    return ok ? 0 : -1;
}

/* ---------------------------------------------------------------------------- MLPRule
 * MetaNCA's MLP rule, no-grad forward of the edges [e0, e1):
 *   v = [w, h, node_out[dst], node_in[src]]   (node means of out-/in-edge states, [V][1+H])
 *   out = scale * (W_L GELU(... GELU(W_1 v + b_1) ...) + b_L)                       [E][1+H]
 * The node means come from the caller (torch block sums); per edge the work is the MLP, so lane
 * gathers of the two node rows are plain scalar copies. */

#define MLP_MAX_LAYERS 9

typedef struct {
    int64_t H, depth, width;
    float scale;
    int32_t pad;
    const float *w[MLP_MAX_LAYERS], *b[MLP_MAX_LAYERS]; /* depth hidden layers, then the output */
} MLPParams;

int ng_mlp_update(const MLPParams *p, int64_t e0, int64_t e1, const float *w, const float *hid,
                  const int64_t *src, const int64_t *dst, const float *node_in,
                  const float *node_out, float *out) {
    const int64_t H = p->H, S = 1 + p->H, in_dim = 3 * S;
    if (p->depth + 1 > MLP_MAX_LAYERS || in_dim > MAXW || p->width > MAXW) return -1;
    float x[MAXW * T], ha[MAXW * T], hb[MAXW * T];
    for (int64_t s = e0; s < e1; s += T) {
        const int n = tile_len(s, e1);
        load_state(H, s, n, w, hid, x); /* rows [0, S): the edge's own state */
        memset(x + S * T, 0, sizeof(float) * (size_t)(2 * S * T));
        for (int t = 0; t < n; t++) {
            const float *fo = node_out + dst[s + t] * S, *bi = node_in + src[s + t] * S;
            for (int64_t k = 0; k < S; k++) x[(S + k) * T + t] = fo[k];
            for (int64_t k = 0; k < S; k++) x[(2 * S + k) * T + t] = bi[k];
        }
        const float *in = x;
        int64_t K = in_dim;
        for (int64_t l = 0; l < p->depth; l++) {
            float *o = (l % 2 == 0) ? ha : hb;
            mm(p->w[l], p->b[l], in, o, p->width, K);
            for (int64_t k = 0; k < p->width * T; k++) o[k] = ng_gelu(o[k]);
            in = o;
            K = p->width;
        }
        float *y = in == x ? ha : x; /* (depth 0: the output layer reads x) */
        mm(p->w[p->depth], p->b[p->depth], in, y, S, K);
        for (int64_t k = 0; k < S * T; k++) y[k] *= p->scale;
        store_rows(y, n, S, out + s * S);
    }
    return 0;
}
