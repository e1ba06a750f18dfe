/* models.h: arch builders (one file each). Each builds the graph of its reference PyTorch
 * definition with identical state_dict names/shapes and init rules (formats.md §2). */
#ifndef AL_MODELS_H
#define AL_MODELS_H
#include "core/model.h"

al_model *al_build_smallcnn(int num_classes, int in_c, int image_size, const al_model_opts *opts);
al_model *al_build_preact_resnet18(int num_classes, int in_c, int image_size, const al_model_opts *opts);
al_model *al_build_resnet18(int num_classes, int in_c, int image_size, const al_model_opts *opts);
al_model *al_build_wrn(int depth, int width, int num_classes, int in_c, int image_size, const al_model_opts *opts);
/* NF-ResNet-18 (core/models/nf_resnet.c): base width 64 = "nf_resnet18", else "nf_resnet18_wW". */
al_model *al_build_nf_resnet18(int width, int num_classes, int in_c, int image_size, const al_model_opts *opts);
/* DFA (core/models/dfa_models.c): Wide_ResNet_orthognal and the project's dfa-smallcnn. */
al_model *al_build_dfa_wrn(int depth, int width, int num_classes, int in_c, int image_size, const al_model_opts *opts);
al_model *al_build_dfa_smallcnn(int num_classes, int in_c, int image_size, const al_model_opts *opts);
/* ANCRA reverse-attention archs (core/models/ancra_models.c): ResNet18_RA, the project's
 * ancra-small (Fashion-MNIST scale; ra = 1) and its plain twin resnet-small (ra = 0). */
al_model *al_build_ancra_resnet18(int num_classes, int in_c, int image_size, const al_model_opts *opts);
al_model *al_build_ancra_small(int num_classes, int in_c, int image_size, int ra, const al_model_opts *opts);
#endif
