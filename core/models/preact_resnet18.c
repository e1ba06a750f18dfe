/* preact_resnet18.c: PreActResNet18 (He et al. 2016 identity mappings) as used by adversarial
 * training codebases (locuslab fast_adversarial / robust_overfitting, RobustBench):
 *   conv1 3x3 (C->64, no bias)
 *   layer1..4: 2 PreActBlocks each, planes 64/128/256/512, first block of layer2..4 stride 2
 *     block: a = relu(bn1(x)); out = conv2(relu(bn2(conv1(a)))) + shortcut
 *            shortcut = shortcut.0(x) (1x1 conv, stride s) when stride != 1 or in != out,
 *                       else x (identity)
 *   bn (512) + relu, avg_pool2d(4) -> 512-d feature, linear (512->K, bias)
 * The projection shortcut reads the raw block input x, as fast_adversarial's and RobustBench's
 * PreActBlock do (formats.md names them as the reference; checked against RobustBench
 * model_zoo/architectures/resnet.py). robust_overfitting / kuangliu feed it relu(bn1(x))
 * (RobustBench's PreActBlockV2): same state_dict, different function, so a checkpoint of that
 * variant would evaluate wrongly here; tools/torch/models.py keeps both for reference.
 * Every conv is bias-free; init is PyTorch's default (kaiming_uniform a=sqrt(5), BN 1/0,
 * Linear default), which the builder API applies unless told otherwise.
 * Twin: tools/torch/models.py PreActResNet18 (names, shapes and forward must match it). */
#include <stdio.h>

#include "core/models/models.h"

/* One PreActBlock. Parameters are added in the reference module order (bn1, conv1, bn2,
 * conv2, shortcut.0) so the table lists them as state_dict() does. Returns the output buffer. */
static int preact_block(al_model *m, const char *name, int x, int in_planes, int planes,
                        int stride) {
    char n[AL_NAME_LEN + 32]; /* block name + suffix; add_param asserts the final length */
    snprintf(n, sizeof n, "%s.bn1", name);
    int a = al_model_relu(m, al_model_bn(m, n, x));
    snprintf(n, sizeof n, "%s.conv1", name);
    int out = al_model_conv(m, n, a, planes, 3, stride, 1, 0);
    snprintf(n, sizeof n, "%s.bn2", name);
    out = al_model_relu(m, al_model_bn(m, n, out));
    snprintf(n, sizeof n, "%s.conv2", name);
    out = al_model_conv(m, n, out, planes, 3, 1, 1, 0);
    int shortcut = x;
    if (stride != 1 || in_planes != planes) {
        snprintf(n, sizeof n, "%s.shortcut.0", name);
        shortcut = al_model_conv(m, n, x, planes, 1, stride, 0, 0);
    }
    return al_model_add(m, out, shortcut);
}

al_model *al_build_preact_resnet18(int num_classes, int in_c, int image_size, const al_model_opts *opts) {
    al_model *m = al_model_new("preact_resnet18", num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    int x = al_model_conv(m, "conv1", al_model_input(m), 64, 3, 1, 1, 0);
    int in_planes = 64;
    for (int l = 0; l < 4; l++) {
        int planes = 64 << l;
        for (int b = 0; b < 2; b++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            x = preact_block(m, name, x, in_planes, planes, (l > 0 && b == 0) ? 2 : 1);
            in_planes = planes;
        }
    }
    x = al_model_relu(m, al_model_bn(m, "bn", x));
    /* avg_pool2d(out, 4) on the 4x4 map of a 32x32 input: the global average */
    int feat = al_model_avgpool(m, x, 4, 4);
    int logits = al_model_linear(m, "linear", feat, num_classes, 1);
    al_model_set_output(m, logits, feat);
    return m;
}
