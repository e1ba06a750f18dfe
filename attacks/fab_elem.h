/* fab_elem.h: the per-element pieces of FAB's box-constrained hyperplane projection, shared by attacks/fab.c (al_fab_project, the host loop) and its CUDA twin
 * cuda/attack_fab.cu (style rule 5). Element j of a projection of t onto {<w', z> = <w', t> -
 * c'} (w' = sg w, sg = sign(c), c' = |c|) moves by -lambda s_j, s = sign(w') (Linf) or w' (L2),
 * clipped at the box [0, 1]; see al_fab_project in attacks/fab.c for the derivation. The
 * argmax rule both use is losses/rowops.h's row_argmax_excl (torch.argmax semantics). */
#ifndef AL_FAB_ELEM_H
#define AL_FAB_ELEM_H

#include <math.h>

#include "attacks/pgd_step.h"

/* Elements below this |w| are inactive in the L2 projection (fab_projections.py masks
 * |w| < 1e-8 the same way; Linf masks only w == 0). */
#define FAB_L2_W_MIN 1e-8

/* Is element j (signed weight wj = sg * w_j) moved at all? */
AL_HOSTDEV int al_fab_active(al_norm norm, double wj) {
    return norm == AL_LINF ? wj != 0.0 : fabs(wj) > FAB_L2_W_MIN;
}

/* Breakpoint of an active element: it saturates at lambda = *lam, contributing *cap to the
 * decrease of <w', z> from then on, and *rate per unit lambda before. */
AL_HOSTDEV void al_fab_breakpoint(al_norm norm, double wj, float tj, double *lam, double *cap,
                                  double *rate) {
    const double aw = fabs(wj);
    double room = wj > 0.0 ? (double)tj : 1.0 - (double)tj;
    if (room < 0.0) room = 0.0; /* t outside [0,1] (never from FAB): no room */
    const double as = norm == AL_LINF ? 1.0 : aw;
    *lam = room / as;
    *cap = aw * room;
    *rate = aw * as;
}

/* The move of element j at lambda (0 for an inactive element). */
AL_HOSTDEV double al_fab_move(al_norm norm, double wj, float tj, double lam) {
    if (!al_fab_active(norm, wj)) return 0.0;
    const double step = norm == AL_LINF ? lam : lam * fabs(wj); /* inf * x stays inf */
    const double lo = -(double)tj, hi = 1.0 - (double)tj;
    return wj > 0.0 ? fmax(-step, lo) : fmin(step, hi);
}

#endif
