/* devbuf.c: guarded test buffers (devbuf.h). */
#include "harness/devbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "harness/check.h"

#define DEVBUF_GUARD 256
#define DEVBUF_TRACK 512

/* An unwritten output holds the NaN 0x7FC0DEAD (little endian); the guards of buffer k hold
 * the NaN 0x7FC10000 + k, one payload per buffer, so a kernel that copies an input's guard
 * into its output's (relu of element n, say) changes the bytes there too. */
static const uint8_t SENT[4] = {0xAD, 0xDE, 0xC0, 0x7F};

typedef struct {
    void *base;
    size_t n_bytes;
    uint32_t guard; /* the guard word */
} dev_rec;

/* byte j of a guard (j counted from the guard's first byte: the guards are word aligned) */
static uint8_t guard_byte(uint32_t w, size_t j) { return (uint8_t)(w >> (8 * (j & 3))); }

static al_ctx *g_gpu;
static dev_rec g_dev[DEVBUF_TRACK];
static int g_n_dev;
static void *g_host[DEVBUF_TRACK];
static int g_n_host;

void devbuf_use(al_ctx *gpu) { g_gpu = gpu; }

void *hnew(size_t n_bytes) {
    AL_ASSERT(g_n_host < DEVBUF_TRACK, "too many host buffers in one case");
    void *p = calloc(1, n_bytes ? n_bytes : 1);
    AL_ASSERT(p, "out of host memory (%zu bytes)", n_bytes);
    g_host[g_n_host++] = p;
    return p;
}

float *hf(size_t n) { return hnew(n * sizeof(float)); }

float *hrand(size_t n, uint64_t id, float lo, float hi) {
    float *p = hf(n);
    al_test_fill(p, n, id, lo, hi);
    return p;
}

float *hcopy(const float *src, size_t n) {
    float *p = hf(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

int32_t *hlabels(int n, int k, uint64_t id) {
    int32_t *y = hnew((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(al_rng_u32(9, al_stream(AL_STREAM_TEST, id), (uint64_t)i) % (uint32_t)k);
    return y;
}

void *dnew(size_t n_bytes, const void *src_host) {
    AL_ASSERT(g_gpu, "devbuf_use was not called");
    AL_ASSERT(g_n_dev < DEVBUF_TRACK, "too many device buffers in one case");
    const size_t tot = n_bytes + 2 * DEVBUF_GUARD;
    uint8_t *h = malloc(tot);
    AL_ASSERT(h, "out of host memory");
    const uint32_t gw = 0x7FC10000u + (uint32_t)g_n_dev;
    for (size_t i = 0; i < DEVBUF_GUARD; i++)
        h[i] = h[DEVBUF_GUARD + n_bytes + i] = guard_byte(gw, i);
    for (size_t i = 0; i < n_bytes; i++) h[DEVBUF_GUARD + i] = SENT[i & 3];
    if (src_host && n_bytes) memcpy(h + DEVBUF_GUARD, src_host, n_bytes);
    void *base = NULL;
    al_status st = al_dev_alloc(g_gpu, &base, tot, "test buffer");
    AL_ASSERT(st == AL_OK, "device alloc: %s", al_errmsg());
    st = al_copy_to_dev(g_gpu, base, h, tot);
    AL_ASSERT(st == AL_OK, "copy to device: %s", al_errmsg());
    st = al_sync(g_gpu); /* h is freed next: the copy completes first, whatever the memory kind */
    AL_ASSERT(st == AL_OK, "sync: %s", al_errmsg());
    free(h);
    g_dev[g_n_dev].base = base;
    g_dev[g_n_dev].n_bytes = n_bytes;
    g_dev[g_n_dev].guard = gw;
    g_n_dev++;
    return (uint8_t *)base + DEVBUF_GUARD;
}

float *dnewf(size_t n, const float *src) { return dnew(n * sizeof(float), src); }

int dget(const char *what, const void *d, void *h_out, size_t n_bytes) {
    const uint8_t *base = (const uint8_t *)d - DEVBUF_GUARD;
    const dev_rec *rec = NULL;
    for (int i = 0; i < g_n_dev; i++)
        if (g_dev[i].base == base) rec = &g_dev[i];
    AL_ASSERT(rec && rec->n_bytes >= n_bytes, "%s: not a test buffer or too short", what);
    const size_t cap = rec->n_bytes;
    const size_t tot = cap + 2 * DEVBUF_GUARD;
    uint8_t *h = malloc(tot);
    AL_ASSERT(h, "out of host memory");
    al_status st = al_copy_to_host(g_gpu, h, base, tot);
    if (st != AL_OK) {
        fprintf(stderr, "  %s: copy to host failed: %s\n", what, al_errmsg());
        free(h);
        return 1;
    }
    int bad = 0;
    for (size_t j = 0; j < 2 * DEVBUF_GUARD && !bad; j++) {
        const int before = j < DEVBUF_GUARD;
        const size_t i = before ? j : cap + j, g = before ? j : j - DEVBUF_GUARD;
        if (h[i] != guard_byte(rec->guard, g)) {
            fprintf(stderr, "  %s: guard byte %s%zu overwritten\n", what, before ? "-" : "+",
                    before ? DEVBUF_GUARD - j : g);
            bad = 1;
        }
    }
    memcpy(h_out, h + DEVBUF_GUARD, n_bytes);
    free(h);
    return bad;
}

int dcheck(const char *what, const float *d, const float *ref, size_t n, double atol,
           double rtol) {
    float *h = hf(n);
    if (dget(what, d, h, n * sizeof(float))) return 1;
    return al_check_close(what, h, ref, n, atol, rtol);
}

int dcheck_bytes(const char *what, const void *d, const void *ref, size_t n_bytes) {
    uint8_t *h = hnew(n_bytes);
    if (dget(what, d, h, n_bytes)) return 1;
    return al_check_bytes(what, h, ref, n_bytes);
}

void devbuf_release(void) {
    if (g_gpu) (void)al_sync(g_gpu);
    for (int i = 0; i < g_n_dev; i++) al_dev_free(g_gpu, g_dev[i].base);
    for (int i = 0; i < g_n_host; i++) free(g_host[i]);
    g_n_dev = g_n_host = 0;
}
