/* registry.c: arch name -> builder. Shape constraints of each reference definition are
 * checked here so a bad request is an error naming the arch, never an assertion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/models/models.h"

const char *al_model_arch_list(void) { return "smallcnn, preact_resnet18, resnet18, wrn-D-W (e.g. wrn-28-10, wrn-34-10, wrn-16-2), ancra-resnet18, ancra-small, resnet-small, nf_resnet18, nf_resnet18_wW (e.g. nf_resnet18_w8), dfa-smallcnn, dfa-wrn-D-W (e.g. dfa-wrn-28-10)"; }

al_status al_model_create(const char *arch, int num_classes, int in_c, int image_size,
                          al_model **out) {
    return al_model_create_opts(arch, num_classes, in_c, image_size, NULL, out);
}

al_status al_model_create_opts(const char *arch, int num_classes, int in_c, int image_size,
                               const al_model_opts *opts, al_model **out) {
    *out = NULL;
    if (opts && (opts->n_branches < 0 || opts->n_branches > AL_MAX_BN_BRANCHES))
        return AL_FAIL(AL_ERR_VALUE, "arch %s: %d BN branches, at most %d", arch, opts->n_branches,
                       AL_MAX_BN_BRANCHES);
    if (num_classes < 2 || num_classes > 100000)
        return AL_FAIL(AL_ERR_VALUE, "arch %s: num_classes %d outside [2, 100000]", arch, num_classes);
    if (in_c < 1 || in_c > 4)
        return AL_FAIL(AL_ERR_VALUE, "arch %s: in_channels %d outside [1, 4]", arch, in_c);
    if (strcmp(arch, "smallcnn") == 0) {
        if (image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch smallcnn: image_size %d, the TRADES SmallCNN needs 28",
                           image_size);
        *out = al_build_smallcnn(num_classes, in_c, image_size, opts);
    } else if (strcmp(arch, "preact_resnet18") == 0 || strcmp(arch, "resnet18") == 0) {
        /* avg_pool2d(out, 4) after three stride-2 stages: image_size must be 32 */
        /* avg_pool2d(out, 4) covers the whole final map for 32x32 and 28x28 (4x4 both) */
        if (image_size != 32 && image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: image_size %d, the reference definition needs 32 "
                                         "(28 also works: Fashion-MNIST)",
                           arch, image_size);
        *out = arch[0] == 'p' ? al_build_preact_resnet18(num_classes, in_c, image_size, opts)
                              : al_build_resnet18(num_classes, in_c, image_size, opts);
    } else if (strncmp(arch, "wrn-", 4) == 0) {
        int depth = 0, width = 0;
        char tail = 0;
        if (sscanf(arch, "wrn-%d-%d%c", &depth, &width, &tail) != 2)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: expected wrn-DEPTH-WIDTH, e.g. wrn-28-10", arch);
        if (depth < 10 || (depth - 4) % 6 != 0 || width < 1 || width > 20)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: depth must be 6n+4 >= 10 and width in [1, 20]", arch);
        if (image_size != 32 && image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: image_size %d, the reference definition needs 32 "
                                         "(28 also works: Fashion-MNIST)",
                           arch, image_size);
        *out = al_build_wrn(depth, width, num_classes, in_c, image_size, opts);
    } else if (strcmp(arch, "ancra-resnet18") == 0 || strcmp(arch, "ancra-small") == 0 ||
               strcmp(arch, "resnet-small") == 0) {
        /* ANCRA RA archs (+ the plain resnet-small): whole-map pooling of a 4x4 final map */
        if (image_size != 32 && image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: image_size %d, needs 32 (28 also works: "
                                         "Fashion-MNIST)",
                           arch, image_size);
        if (strcmp(arch, "ancra-resnet18") == 0)
            *out = al_build_ancra_resnet18(num_classes, in_c, image_size, opts);
        else
            *out = al_build_ancra_small(num_classes, in_c, image_size, arch[0] == 'a', opts);
    } else if (strcmp(arch, "nf_resnet18") == 0 || strncmp(arch, "nf_resnet18_w", 13) == 0) {
        /* normalizer-free (NoFrost): no BN, so no BN branches; 28 and 32 both pool to 4x4 */
        int width = 64;
        char tail = 0;
        if (arch[11] && (sscanf(arch, "nf_resnet18_w%d%c", &width, &tail) != 1 || width < 1 ||
                         width > 1024))
            return AL_FAIL(AL_ERR_VALUE, "arch %s: expected nf_resnet18 or nf_resnet18_wW with W in "
                                         "[1, 1024], e.g. nf_resnet18_w8",
                           arch);
        if (opts && opts->n_branches > 1)
            return AL_FAIL(AL_ERR_VALUE, "arch %s has no BN layers: bn_branches must be 1", arch);
        if (image_size != 32 && image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: image_size %d, expected 32 (CIFAR) or 28 "
                                         "(Fashion-MNIST)",
                           arch, image_size);
        *out = al_build_nf_resnet18(width, num_classes, in_c, image_size, opts);
    } else if (strcmp(arch, "dfa-smallcnn") == 0) {
        if (image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch dfa-smallcnn: image_size %d, the SmallCNN trunk needs 28",
                           image_size);
        *out = al_build_dfa_smallcnn(num_classes, in_c, image_size, opts);
    } else if (strncmp(arch, "dfa-wrn-", 8) == 0) {
        int depth = 0, width = 0;
        char tail = 0;
        if (sscanf(arch, "dfa-wrn-%d-%d%c", &depth, &width, &tail) != 2)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: expected dfa-wrn-DEPTH-WIDTH, e.g. dfa-wrn-28-10", arch);
        if (depth < 10 || (depth - 4) % 6 != 0 || width < 1 || width > 20)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: depth must be 6n+4 >= 10 and width in [1, 20]", arch);
        if (image_size != 32 && image_size != 28)
            return AL_FAIL(AL_ERR_VALUE, "arch %s: image_size %d, the reference definition needs 32 "
                                         "(28 also works: Fashion-MNIST)",
                           arch, image_size);
        *out = al_build_dfa_wrn(depth, width, num_classes, in_c, image_size, opts);
    } else {
        return AL_FAIL(AL_ERR_VALUE, "unknown arch '%s' (known: %s)", arch, al_model_arch_list());
    }
    return AL_OK;
}
