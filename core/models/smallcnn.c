/* smallcnn.c: TRADES models/small_cnn.py SmallCNN (1x28x28 input, drop = 0.5).
 *   feature_extractor: conv1 3x3 (C->32), relu, conv2 (32->32), relu, maxpool 2,
 *                      conv3 (32->64), relu, conv4 (64->64), relu, maxpool 2   -> 64x4x4
 *   classifier: fc1 (1024->200), relu, dropout(0.5), fc2 (200->200), relu, fc3 (200->K)
 * Init as the reference: kaiming_normal_ on conv weights, conv bias 0, Linear default
 * (kaiming_uniform a=sqrt(5)), fc3 weight and bias 0. The penultimate feature is the fc2 ReLU
 * output (200-d). */
#include <stdio.h>

#include "core/models/models.h"

al_model *al_build_smallcnn(int num_classes, int in_c, int image_size, const al_model_opts *opts) {
    al_model *m = al_model_new("smallcnn", num_classes, in_c, image_size, image_size);
    if (opts && opts->n_branches > 1) al_model_set_branches(m, opts->n_branches);
    /* no normalisation in the reference: mean 0, std 1 (the identity) */
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
    x = al_model_dropout(m, x, 0.5f);
    x = al_model_linear(m, "classifier.fc2", x, 200, 1);
    int feat = al_model_relu(m, x);
    int logits = al_model_linear(m, "classifier.fc3", feat, num_classes, 1);
    al_model_param_init(m, "classifier.fc3.weight", AL_INIT_ZERO);
    al_model_param_init(m, "classifier.fc3.bias", AL_INIT_ZERO);
    al_model_set_output(m, logits, feat);
    return m;
}
