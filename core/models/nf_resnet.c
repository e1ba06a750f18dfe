/* nf_resnet.c: normalizer-free pre-activation ResNet-18 for CIFAR-sized inputs (arch
 * "nf_resnet18"; "nf_resnet18_wW" scales the widths to W/2W/4W/8W, e.g. nf_resnet18_w8 for
 * CPU tests), built from timm's NF-ResNet rules (timm/models/nfnet.py NormFreeNet +
 * NormFreeBlock, layers/std_conv.py ScaledStdConv2d; read, not copied) on the PreActResNet-18
 * layout of this repo (3x3 stem, basic blocks, 64/128/256/512, no max pool):
 *   stem.conv       WS conv 3x3, C -> 64, stride 1 (no activation: blocks pre-activate)
 *   stages.S.B      S = 0..3, B = 0..1; stride 2 on block 0 of stages 1..3; per block
 *                     out      = relu(x) * beta           (beta = 1/sqrt(expected_var))
 *                     shortcut = downsample(out) when the shape changes, else x
 *                                downsample = avgpool 2x2/2 ceil_mode (count_include_pad
 *                                False) then WS conv 1x1 (timm DownsampleAvg, 'D' style)
 *                     out      = conv2(relu(conv1(out)))  (WS conv 3x3; conv1 carries the
 *                                stride; conv2's gain starts at 0: timm gain_init = 0)
 *                     y        = out * alpha + shortcut   (alpha = 0.2)
 *                   expected_var starts at 1, is reset to 1 after block 0 of each stage and
 *                   grows by alpha^2 after every block (timm's loop, verbatim semantics).
 *   final_act       relu; global average pool -> 512-d feature; head.fc (512 -> K, bias)
 * Every conv is a scaled-WS conv (core/ops/wsconv.h) with bias, gamma_relu =
 * 1.7139588594436646 and eps 1e-5 (NfCfg.std_conv_eps), statistics over fan_in. No BN
 * anywhere. Init as NormFreeNet: conv weights N(0, 1/fan_in), conv biases 0, gains 1 (0 on
 * each block's conv2), fc weight N(0, 0.01^2), fc bias 0.
 * NoFrost (methods.md §5.3) trained timm nf_resnet50 (bottleneck blocks, 7x7 stem + max pool,
 * widths 256..2048) on ImageNet with drop_rate 0.25 and drop_path_rate 0.1; this CIFAR-sized
 * variant keeps the NF block semantics but has no dropout / stochastic depth (the builder API
 * has no rates to pass: see experiments/nofrost/NOTES.md). 28x28 inputs (Fashion-MNIST)
 * work: the ceil-mode pool and the padded stride-2 conv both map 7x7 to 4x4. */
#include <math.h>
#include <stdio.h>

#include "core/models/models.h"
#include "core/ops/wsconv.h"

#define NF_ALPHA 0.2f

static int ws(al_model *m, const char *name, int in, int c_out, int k, int stride, int gain_zero) {
    return al_model_wsconv(m, name, in, c_out, k, stride, k / 2, 1, (float)AL_NF_GAMMA_RELU,
                           AL_NF_STD_CONV_EPS, gain_zero);
}

/* One NF basic block; parameters in module order conv1, conv2, downsample.conv (timm
 * registers downsample first; the order only affects the table listing). */
static int nf_block(al_model *m, const char *name, int x, int in_planes, int planes, int stride,
                    float beta) {
    char n[AL_NAME_LEN + 32];
    int out = al_model_relu(m, x);
    /* timm multiplies by beta even when it is 1.0 (a bitwise no-op): the node is skipped then */
    if (beta != 1.0f) out = al_model_scale_add(m, beta, out, -1);
    int shortcut = x;
    if (stride != 1 || in_planes != planes) {
        int s = stride > 1 ? al_model_avgpool2_ceil(m, out) : out;
        snprintf(n, sizeof n, "%s.downsample.conv", name);
        shortcut = ws(m, n, s, planes, 1, 1, 0);
    }
    snprintf(n, sizeof n, "%s.conv1", name);
    int r = ws(m, n, out, planes, 3, stride, 0);
    r = al_model_relu(m, r);
    snprintf(n, sizeof n, "%s.conv2", name);
    r = ws(m, n, r, planes, 3, 1, 1);
    return al_model_scale_add(m, NF_ALPHA, r, shortcut);
}

al_model *al_build_nf_resnet18(int width, int num_classes, int in_c, int image_size,
                               const al_model_opts *opts) {
    (void)opts; /* no BN, so no BN branches */
    AL_ASSERT(width >= 1 && width <= 1024, "nf_resnet18 width %d", width);
    char arch[64];
    if (width == 64)
        snprintf(arch, sizeof arch, "nf_resnet18");
    else
        snprintf(arch, sizeof arch, "nf_resnet18_w%d", width);
    al_model *m = al_model_new(arch, num_classes, in_c, image_size, image_size);
    int x = ws(m, "stem.conv", al_model_input(m), width, 3, 1, 0);
    int in_planes = width;
    double expected_var = 1.0; /* a Python float in timm */
    for (int s = 0; s < 4; s++) {
        const int planes = width << s;
        for (int b = 0; b < 2; b++) {
            char name[AL_NAME_LEN];
            snprintf(name, sizeof name, "stages.%d.%d", s, b);
            /* beta = 1 / expected_var ** 0.5, computed in double by timm, used as a float */
            const float beta = (float)(1.0 / sqrt(expected_var));
            x = nf_block(m, name, x, in_planes, planes, (s > 0 && b == 0) ? 2 : 1, beta);
            if (b == 0) expected_var = 1.0;
            expected_var += 0.2 * 0.2; /* alpha ** 2 in double */
            in_planes = planes;
        }
    }
    x = al_model_relu(m, x); /* final_act */
    const int fm = m->bufs[x].h;
    const int feat = al_model_avgpool(m, x, fm, fm);
    const int logits = al_model_linear(m, "head.fc", feat, num_classes, 1);
    /* fc init N(0, 0.01^2): AL_INIT_KAIMING_NORMAL draws N(0, 2/fan), so fan = 2/0.01^2 */
    const int iw = al_model_find_param(m, "head.fc.weight");
    m->params[iw].init = AL_INIT_KAIMING_NORMAL;
    m->params[iw].fan_in = 20000;
    al_model_param_init(m, "head.fc.bias", AL_INIT_ZERO);
    al_model_set_output(m, logits, feat);
    return m;
}
