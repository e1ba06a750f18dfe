/* train.h: the host scheduler: epoch/step loop with attack-in-the-loop, LR schedule, SGD/EMA,
 * evaluation cadence, JSONL metrics + progress line, atomic checkpoints every N epochs, on
 * SIGTERM/SIGINT and at the end, exact resume, and NaN/Inf loss guard.
 *
 * Reproducibility: every random draw (init, shuffling, augmentation, dropout, attack starts)
 * is Philox(run.seed, purpose, step/epoch/index), so the state of a run is (params, momentum,
 * EMA, BN counters, step). A resumed CPU run is bit-identical to an uninterrupted one. */
#ifndef AL_TRAIN_H
#define AL_TRAIN_H

#include "core/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_train_result {
    int epochs_done;
    int64_t steps;
    double last_loss;
    double test_clean_acc, test_robust_acc; /* last evaluation (NaN if none) */
    int interrupted;                        /* stopped by SIGTERM/SIGINT (checkpoint saved) */
    char checkpoint[1100];                  /* path of the last checkpoint written */
} al_train_result;

/* Train per cfg (validated). resume: checkpoint to continue from, or NULL. Outputs go to
 * <run.out_dir>/<run.name>/{checkpoint.h5, metrics.jsonl}. Returns AL_ERR_INTERRUPTED after
 * saving on a signal, AL_ERR_NAN (last good checkpoint kept) on a non-finite loss. */
al_status al_train(const al_config *cfg, const char *resume, al_train_result *res);

/* Install SIGTERM/SIGINT handlers that request a checkpoint-and-stop (idempotent). */
void al_train_install_signals(void);
/* For tests: request a stop as a signal would. */
void al_train_request_stop(void);

#ifdef __cplusplus
}
#endif
#endif
