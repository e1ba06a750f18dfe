/* ancra_models.c: reverse-attention (RA) architectures for ANCRA (methods.md §3.1).
 *
 * ancra-resnet18: changzhang777/ANCRA @b3ebc8e TRADES-ANCRA/models/resnet.py ResNet18_RA --
 *   the kuangliu ResNet-18 (core/models/resnet18.c) whose two layer4 blocks are RA_Blocks:
 *     z  = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))       (N, 512, 4, 4)
 *     p  = fc(avgpool4(z))         auxiliary logits (the SHARED final fc), aux output
 *     z' = z * fc.weight[k, :]      k = label (train) / argmax p (eval)  -> next block
 *   logits = fc(avgpool4(z'_2)); the penultimate feature is avgpool4(z'_2) (512-d).
 *   state_dict names as the reference: conv1, bn1, layer1..3.*, layer4.{0,1}.*, fc.{weight,bias}
 *   (layer4 is a ModuleList of RA_Blocks there: the same names). PyTorch default init.
 * ancra-small: a PROJECT arch (no paper counterpart) for Fashion-MNIST-scale tests: the same
 *   structure at a few percent of the cost, 28x28 (or 32x32) inputs:
 *     conv1 3x3 stride 2 (C->16) bn1 relu               -> 16 x 14 x 14
 *     layer1.0  BasicBlock 16->32, stride 2             -> 32 x 7 x 7
 *     layer4.0  RA BasicBlock 32->32, stride 2          -> 32 x 4 x 4  (+ aux head)
 *     layer4.1  RA BasicBlock 32->32                    -> 32 x 4 x 4  (+ aux head)
 *     avgpool 4, fc (32->K)
 * resnet-small: PROJECT arch, ancra-small with plain layer4 blocks (identical parameter table,
 *   no RA): the same-size standard-training baseline for the Fashion-MNIST tests.
 * Twin: tests/torch/ancra_ref.py (ResNet_RA transcription). */
#include <stdio.h>

#include "core/models/models.h"
#include "core/ops/ra.h"

/* One BasicBlock (kuangliu/RA_Block trunk); parameters in reference order conv1, bn1, conv2,
 * bn2, shortcut.{0,1}. Returns the block output z (after the final ReLU). */
static int basic_block(al_model *m, const char *name, int x, int in_planes, int planes,
                       int stride) {
    char n[AL_NAME_LEN + 32];
    snprintf(n, sizeof n, "%s.conv1", name);
    int out = al_model_conv(m, n, x, planes, 3, stride, 1, 0);
    snprintf(n, sizeof n, "%s.bn1", name);
    out = al_model_relu(m, al_model_bn(m, n, out));
    snprintf(n, sizeof n, "%s.conv2", name);
    out = al_model_conv(m, n, out, planes, 3, 1, 1, 0);
    snprintf(n, sizeof n, "%s.bn2", name);
    out = al_model_bn(m, n, out);
    int shortcut = x;
    if (stride != 1 || in_planes != planes) {
        snprintf(n, sizeof n, "%s.shortcut.0", name);
        shortcut = al_model_conv(m, n, x, planes, 1, stride, 0, 0);
        snprintf(n, sizeof n, "%s.shortcut.1", name);
        shortcut = al_model_bn(m, n, shortcut);
    }
    return al_model_relu(m, al_model_add(m, out, shortcut));
}

/* Two RA blocks named layer4.0 / layer4.1, then avgpool + the shared fc; sets the outputs. */
static void ra_tail(al_model *m, int x, int in_planes, int planes, int stride) {
    int aux;
    for (int b = 0; b < 2; b++) {
        char name[AL_NAME_LEN];
        snprintf(name, sizeof name, "layer4.%d", b);
        const int z = basic_block(m, name, x, b ? planes : in_planes, planes, b ? 1 : stride);
        x = al_ra_attach(m, name, z, &aux);
    }
    const al_buf xb = m->bufs[x];
    const int feat = al_model_avgpool(m, x, xb.h, xb.h);
    const int logits = al_model_linear(m, "fc", feat, m->num_classes, 1);
    al_model_set_output(m, logits, feat);
    al_ra_bind_fc(m, al_model_find_param(m, "fc.weight"), al_model_find_param(m, "fc.bias"));
}

al_model *al_build_ancra_resnet18(int num_classes, int in_c, int image_size,
                                  const al_model_opts *opts) {
    al_model *m = al_model_new("ancra-resnet18", num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    int x = al_model_conv(m, "conv1", al_model_input(m), 64, 3, 1, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn1", x));
    int in_planes = 64;
    for (int l = 0; l < 3; l++) {
        const int planes = 64 << l;
        for (int b = 0; b < 2; b++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            x = basic_block(m, name, x, in_planes, planes, (l > 0 && b == 0) ? 2 : 1);
            in_planes = planes;
        }
    }
    ra_tail(m, x, in_planes, 512, 2);
    return m;
}

/* ancra-small (ra = 1) and its plain twin resnet-small (ra = 0: the same parameters, plain
 * layer4 blocks, no auxiliary heads) -- the standard-training baseline of the same size. */
al_model *al_build_ancra_small(int num_classes, int in_c, int image_size, int ra,
                               const al_model_opts *opts) {
    al_model *m = al_model_new(ra ? "ancra-small" : "resnet-small", num_classes, in_c, image_size,
                               image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    int x = al_model_conv(m, "conv1", al_model_input(m), 16, 3, 2, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn1", x));
    x = basic_block(m, "layer1.0", x, 16, 32, 2);
    if (ra) {
        ra_tail(m, x, 32, 32, 2);
        return m;
    }
    x = basic_block(m, "layer4.0", x, 32, 32, 2);
    x = basic_block(m, "layer4.1", x, 32, 32, 1);
    const int feat = al_model_avgpool(m, x, 4, 4);
    al_model_set_output(m, al_model_linear(m, "fc", feat, num_classes, 1), feat);
    return m;
}
