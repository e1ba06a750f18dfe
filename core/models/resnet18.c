/* resnet18.c: RobustBench model_zoo/architectures/resnet.py ResNet18 (kuangliu CIFAR form):
 *   conv1 3x3 (C->64, no bias), bn1, relu
 *   layer1..4: 2 BasicBlocks each, planes 64/128/256/512, first block of layer2..4 stride 2
 *     block: out = bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x); relu
 *            shortcut = shortcut.1(shortcut.0(x)) (1x1 conv stride s + BN) when stride != 1
 *                       or in != out, else x
 *   avg_pool2d(4) -> 512-d feature, linear (512->K, bias)
 * Init: PyTorch defaults (the reference sets none). Convs are bias-free.
 * Twin: tools/torch/models.py ResNet18. */
#include <stdio.h>

#include "core/models/models.h"

/* One BasicBlock; parameters in reference order conv1, bn1, conv2, bn2, shortcut.{0,1}. */
static int basic_block(al_model *m, const char *name, int x, int in_planes, int planes,
                       int stride) {
    char n[AL_NAME_LEN + 32]; /* block name + suffix; add_param asserts the final length */
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

al_model *al_build_resnet18(int num_classes, int in_c, int image_size, const al_model_opts *opts) {
    al_model *m = al_model_new("resnet18", num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    int x = al_model_conv(m, "conv1", al_model_input(m), 64, 3, 1, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn1", x));
    int in_planes = 64;
    for (int l = 0; l < 4; l++) {
        int planes = 64 << l;
        for (int b = 0; b < 2; b++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            x = basic_block(m, name, x, in_planes, planes, (l > 0 && b == 0) ? 2 : 1);
            in_planes = planes;
        }
    }
    int feat = al_model_avgpool(m, x, 4, 4); /* 4x4 map of a 32x32 input -> 1x1 */
    int logits = al_model_linear(m, "linear", feat, num_classes, 1);
    al_model_set_output(m, logits, feat);
    return m;
}
