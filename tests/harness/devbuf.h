/* devbuf.h: guarded test buffers for the CUDA twin tests (test_cuda.c, test_cuda2.c).
 *
 * Every device buffer sits between sentinel guards (256 bytes on each side, style rule 23)
 * holding a NaN whose payload is the buffer's own, so a kernel writing past either end shows
 * up even when what it writes is another buffer's guard; a buffer made without host data
 * starts filled with a NaN (0x7FC0DEAD), so a kernel that reads an output it should only
 * write, or skips an element, shows up as NaN. dget copies a buffer back and checks both
 * guards byte for byte.
 * Host and device buffers are tracked and released together by devbuf_release (between test
 * cases). One device ctx at a time: devbuf_use names it. Test code only. */
#ifndef AL_DEVBUF_H
#define AL_DEVBUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/ctx.h"

void devbuf_use(al_ctx *gpu);

/* host buffers, zeroed (hnew, hf), Philox-filled (hrand: al_test_fill), a copy (hcopy), or
 * labels in [0, k) (hlabels) */
void *hnew(size_t n_bytes);
float *hf(size_t n);
float *hrand(size_t n, uint64_t id, float lo, float hi);
float *hcopy(const float *src, size_t n);
int32_t *hlabels(int n, int k, uint64_t id);

/* device buffer of n_bytes between guards, filled from src_host (complete on return) or with
 * the NaN pattern when src_host is NULL */
void *dnew(size_t n_bytes, const void *src_host);
float *dnewf(size_t n, const float *src);

/* copy n_bytes from the start of a dnew buffer to h_out; 1 (printed) if a guard byte changed
 * or the copy failed */
int dget(const char *what, const void *d, void *h_out, size_t n_bytes);
/* dget, then al_check_close against ref / al_check_bytes byte for byte */
int dcheck(const char *what, const float *d, const float *ref, size_t n, double atol, double rtol);
int dcheck_bytes(const char *what, const void *d, const void *ref, size_t n_bytes);

/* sync the device ctx, free every tracked buffer */
void devbuf_release(void);

#endif
