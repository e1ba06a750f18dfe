/* wrn.c: RobustBench model_zoo/architectures/wide_resnet.py WideResNet (from TRADES),
 * depth D = 6n+4, widen factor W, dropRate 0, bias_last = True:
 *   conv1 3x3 (C->16, no bias)
 *   block1..3 (NetworkBlock, n BasicBlocks each as blockK.layer.J), widths 16W/32W/64W,
 *   strides 1/2/2 on the first block of each group. BasicBlock (equalInOut = in == out):
 *     equalInOut:  out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + x
 *     otherwise:   x' = relu(bn1(x)); out = conv2(relu(bn2(conv1(x')))) + convShortcut(x')
 *                  (convShortcut: 1x1, stride s, no bias; both branches read x')
 *   bn1 + relu, avg_pool2d(8) -> 64W feature, fc (64W->K, bias)
 * Init as the reference: every conv weight N(0, 2/(k*k*out_channels)) (fan-out Kaiming), BN
 * weight 1 / bias 0, fc bias 0; fc weight keeps nn.Linear's default (the reference loop does
 * not touch it). Twin: tools/torch/models.py WideResNet. */
#include <stdio.h>

#include "core/models/models.h"

static int wrn_conv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad) {
    int out = al_model_conv(m, name, in, c_out, k, stride, pad, 0);
    char pn[AL_NAME_LEN + 48];
    snprintf(pn, sizeof pn, "%s.weight", name);
    al_model_param_init(m, pn, AL_INIT_KAIMING_NORMAL_FANOUT);
    return out;
}

/* One BasicBlock; parameters in reference order bn1, conv1, bn2, conv2, convShortcut. */
static int wrn_block(al_model *m, const char *name, int x, int in_planes, int out_planes,
                     int stride) {
    char n[AL_NAME_LEN + 32]; /* block name + suffix; add_param asserts the final length */
    const int equal_in_out = in_planes == out_planes;
    snprintf(n, sizeof n, "%s.bn1", name);
    int a = al_model_relu(m, al_model_bn(m, n, x));
    snprintf(n, sizeof n, "%s.conv1", name);
    int out = wrn_conv(m, n, a, out_planes, 3, stride, 1);
    snprintf(n, sizeof n, "%s.bn2", name);
    out = al_model_relu(m, al_model_bn(m, n, out));
    snprintf(n, sizeof n, "%s.conv2", name);
    out = wrn_conv(m, n, out, out_planes, 3, 1, 1);
    int shortcut = x;
    if (!equal_in_out) {
        snprintf(n, sizeof n, "%s.convShortcut", name);
        shortcut = wrn_conv(m, n, a, out_planes, 1, stride, 0);
    }
    /* the reference adds shortcut + residual: addition is commutative in IEEE, so the
     * operand order does not change a bit */
    return al_model_add(m, shortcut, out);
}

al_model *al_build_wrn(int depth, int width, int num_classes, int in_c, int image_size, const al_model_opts *opts) {
    AL_ASSERT(depth >= 10 && (depth - 4) % 6 == 0, "wrn depth %d is not 6n+4", depth);
    char arch[64];
    snprintf(arch, sizeof arch, "wrn-%d-%d", depth, width);
    al_model *m = al_model_new(arch, num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    const int n = (depth - 4) / 6;
    const int ch[4] = {16, 16 * width, 32 * width, 64 * width};
    int x = wrn_conv(m, "conv1", al_model_input(m), ch[0], 3, 1, 1);
    for (int g = 1; g <= 3; g++) {
        for (int j = 0; j < n; j++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "block%d.layer.%d", g, j);
            int stride = (j == 0 && g > 1) ? 2 : 1;
            x = wrn_block(m, name, x, j == 0 ? ch[g - 1] : ch[g], ch[g], stride);
        }
    }
    x = al_model_relu(m, al_model_bn(m, "bn1", x));
    /* RobustBench: avg_pool2d(out, 8), the whole 8x8 map of a 32x32 input; a 28x28 input
     * (Fashion-MNIST) leaves 7x7, pooled whole as well */
    int fm = m->bufs[x].h;
    int feat = al_model_avgpool(m, x, fm, fm);
    int logits = al_model_linear(m, "fc", feat, num_classes, 1);
    al_model_param_init(m, "fc.bias", AL_INIT_ZERO);
    al_model_set_output(m, logits, feat);
    return m;
}
