/* dfa_models.c: the DFA architectures (methods.md §1.1), heads built from core/ops/dfa_ops.h.
 *
 * dfa-wrn-D-W: HaozheLiu-ST/DynamicFeatureAggregation models.py @53f2fd9 Wide_ResNet_orthognal
 * (after meliketoy/wide-resnet.pytorch), depth D = 6n+4, widen factor W, dropout 0:
 *   conv1 3x3 (C->16, bias)
 *   layer1..3 (n wide_basic each as layerG.J), widths 16W/32W/64W, strides 1/2/2 on block 0:
 *     out = conv1(relu(bn1(x)))              conv1 3x3, stride 1, bias
 *     out = conv2(relu(bn2(out)))            conv2 3x3, stride s, bias (dropout p = 0: omitted)
 *     out += shortcut(x)                     shortcut.0: 1x1 stride s, bias, on the RAW block
 *                                            input x, when s != 1 or in != out; else identity
 *   NO final BN + ReLU: the official `bn1` (64W, momentum 0.9) is built but never used in
 *   forward. It is kept here as frozen buffers (bn1.weight/bias/running_mean/running_var) so the
 *   parameter table matches the official state_dict; nothing reads or updates it.
 *   avg_pool2d over the whole final map (8x8 for 32x32 inputs; 7x7 for 28x28, where PyTorch's
 *   avg_pool2d(out, 8) would fail), z = F.normalize(., dim=1), logits = |linear(z)| with
 *   linear (K x 64W, bias=False) orthogonal and frozen.
 *   Init as the reference loop: every conv weight N(0, 2/(k*k*out_channels)); conv biases keep
 *   nn.Conv2d's default U(+-1/sqrt(fan_in)); BN weight 1, bias 0; linear orthogonal (gain 1).
 *   Input normalisation (OverfittingNet's (x - mu)/sigma) is the model's first node, set from
 *   model.mean / model.std. Parameter order = the state_dict's (module registration) order.
 *
 * dfa-smallcnn (PROJECT arch, not from the DFA paper: a Fashion-MNIST-sized DFA model):
 *   the TRADES SmallCNN (smallcnn.c) feature extractor and classifier.fc1 (1024->200) + ReLU and
 *   classifier.fc2 (200->200), with the DFA head on fc2's output: no ReLU after fc2 (as the WRN
 *   has no final BN+ReLU, the embedding is the last trainable layer's raw output), no dropout
 *   (DFA's WRN uses dropout 0, and three dropout masks would perturb the pivot), then
 *   z = normalize(fc2), logits = |linear(z)| with linear (K x 200) frozen orthogonal.
 *   Init as smallcnn.c (kaiming_normal_ convs, bias 0; nn.Linear default for fc1/fc2). */
#include <stdio.h>

#include "core/models/models.h"
#include "core/ops/dfa_ops.h"

static int dfa_conv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad) {
    int out = al_model_conv(m, name, in, c_out, k, stride, pad, 1);
    char pn[AL_NAME_LEN + 48];
    snprintf(pn, sizeof pn, "%s.weight", name);
    al_model_param_init(m, pn, AL_INIT_KAIMING_NORMAL_FANOUT);
    return out;
}

/* One wide_basic; parameters in the reference's registration order bn1, conv1, bn2, conv2,
 * shortcut.0 (which is also the graph order, the shortcut conv being computed last). */
static int wide_basic(al_model *m, const char *name, int x, int in_planes, int planes, int stride) {
    char n[AL_NAME_LEN + 32];
    snprintf(n, sizeof n, "%s.bn1", name);
    int out = al_model_relu(m, al_model_bn(m, n, x));
    snprintf(n, sizeof n, "%s.conv1", name);
    out = dfa_conv(m, n, out, planes, 3, 1, 1);
    snprintf(n, sizeof n, "%s.bn2", name);
    out = al_model_relu(m, al_model_bn(m, n, out));
    snprintf(n, sizeof n, "%s.conv2", name);
    out = dfa_conv(m, n, out, planes, 3, stride, 1);
    int shortcut = x;
    if (stride != 1 || in_planes != planes) {
        snprintf(n, sizeof n, "%s.shortcut.0", name);
        shortcut = dfa_conv(m, n, x, planes, 1, stride, 0);
    }
    /* the reference does out += shortcut(x): IEEE addition commutes, so order is free */
    return al_model_add(m, out, shortcut);
}

al_model *al_build_dfa_wrn(int depth, int width, int num_classes, int in_c, int image_size,
                           const al_model_opts *opts) {
    AL_ASSERT(depth >= 10 && (depth - 4) % 6 == 0, "dfa-wrn depth %d is not 6n+4", depth);
    char arch[64];
    snprintf(arch, sizeof arch, "dfa-wrn-%d-%d", depth, width);
    al_model *m = al_model_new(arch, num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    const int n = (depth - 4) / 6;
    const int ch[4] = {16, 16 * width, 32 * width, 64 * width};
    int x = dfa_conv(m, "conv1", al_model_input(m), ch[0], 3, 1, 1);
    int in_planes = ch[0];
    for (int g = 1; g <= 3; g++) {
        for (int j = 0; j < n; j++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "layer%d.%d", g, j);
            const int stride = (j == 0 && g > 1) ? 2 : 1;
            x = wide_basic(m, name, x, in_planes, ch[g], stride);
            in_planes = ch[g];
        }
    }
    /* the unused final BN of the reference, as frozen buffers (see the file comment) */
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    static const al_param_kind kinds[4] = {AL_P_BN_WEIGHT, AL_P_BN_BIAS, AL_P_BN_MEAN, AL_P_BN_VAR};
    static const al_init_kind inits[4] = {AL_INIT_ONE, AL_INIT_ZERO, AL_INIT_ZERO, AL_INIT_ONE};
    for (int j = 0; j < 4; j++) {
        char pn[32];
        snprintf(pn, sizeof pn, "bn1.%s", suffix[j]);
        al_model_add_param(m, pn, 1, &ch[3], kinds[j], inits[j], 0, 0, 0);
    }
    const int fm = m->bufs[x].h;
    int feat = al_model_avgpool(m, x, fm, fm);
    al_model_dfa_head(m, "linear", feat);
    return m;
}

al_model *al_build_dfa_smallcnn(int num_classes, int in_c, int image_size,
                                const al_model_opts *opts) {
    al_model *m = al_model_new("dfa-smallcnn", num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    int x = al_model_input(m);
    static const char *conv[4] = {"feature_extractor.conv1", "feature_extractor.conv2",
                                  "feature_extractor.conv3", "feature_extractor.conv4"};
    static const int ch[4] = {32, 32, 64, 64};
    for (int i = 0; i < 4; i++) {
        x = al_model_conv(m, conv[i], x, ch[i], 3, 1, 0, 1);
        char wn[AL_NAME_LEN + 16], bn[AL_NAME_LEN + 16];
        snprintf(wn, sizeof wn, "%s.weight", conv[i]);
        snprintf(bn, sizeof bn, "%s.bias", conv[i]);
        al_model_param_init(m, wn, AL_INIT_KAIMING_NORMAL);
        al_model_param_init(m, bn, AL_INIT_ZERO);
        x = al_model_relu(m, x);
        if (i == 1 || i == 3) x = al_model_maxpool(m, x, 2, 2);
    }
    x = al_model_linear(m, "classifier.fc1", x, 200, 1);
    x = al_model_relu(m, x);
    int feat = al_model_linear(m, "classifier.fc2", x, 200, 1);
    al_model_dfa_head(m, "linear", feat);
    return m;
}
