#!/usr/bin/env python3
"""make_bad.py DIR: derive the bad HDF5 inputs of tests/test_badinput.c from the good files the
test wrote with advlab (DIR/good.h5: dataset, train 40 x 1x4x4 + test 10, 10 classes;
DIR/good_ckpt.h5: smallcnn checkpoint). Each bad file breaks exactly one rule of formats.md.
Add a case: write a function here, then a matching entry in test_badinput.c's table."""
import shutil
import sys

import h5py
import numpy as np

D = sys.argv[1]


def derive(src, name, edit):
    dst = f"{D}/{name}"
    shutil.copyfile(f"{D}/{src}", dst)
    with h5py.File(dst, "r+") as f:
        edit(f)


def replace(f, path, data):
    del f[path]
    f[path] = data


# ---- dataset files
derive("good.h5", "ds_wrong_format.h5", lambda f: f.attrs.__setitem__("format", "advlab-checkpoint"))
derive("good.h5", "ds_version2.h5", lambda f: f.attrs.__setitem__("format_version", np.int32(2)))
derive("good.h5", "ds_no_num_classes.h5", lambda f: f.attrs.__delitem__("num_classes"))
derive("good.h5", "ds_num_classes_str.h5", lambda f: f.attrs.__setitem__("num_classes", "ten"))
derive("good.h5", "ds_class_names3.h5", lambda f: f.attrs.__setitem__("class_names", ["a", "b", "c"]))
derive("good.h5", "ds_images_rank3.h5", lambda f: replace(f, "train/images", f["train/images"][...].reshape(40, 4, 4)))
derive("good.h5", "ds_images_float.h5", lambda f: replace(f, "train/images", f["train/images"][...].astype(np.float32)))
derive("good.h5", "ds_labels_short.h5", lambda f: replace(f, "train/labels", f["train/labels"][:39]))
derive("good.h5", "ds_no_labels.h5", lambda f: f.__delitem__("train/labels"))
derive("good.h5", "ds_labels_float.h5", lambda f: replace(f, "train/labels", f["train/labels"][...].astype(np.float64)))


def label_at(i, v):
    def edit(f):
        y = f["train/labels"][...].astype(np.int64)
        y[i] = v
        replace(f, "train/labels", y)
    return edit


derive("good.h5", "ds_label10.h5", label_at(7, 10))
derive("good.h5", "ds_label_minus1.h5", label_at(3, -1))
derive("good.h5", "ds_label_huge.h5", label_at(5, 1 << 40))


def pixel300(f):
    x = f["train/images"][...].astype(np.int16)
    x[5, 0, 1, 2] = 300
    replace(f, "train/images", x)


derive("good.h5", "ds_pixel300.h5", pixel300)

# ---- checkpoints (smallcnn)
derive("good_ckpt.h5", "ck_wrong_format.h5", lambda f: f.attrs.__setitem__("format", "advlab-dataset"))
derive("good_ckpt.h5", "ck_unknown_arch.h5", lambda f: f["model"].attrs.__setitem__("arch", "resnet9000"))
derive("good_ckpt.h5", "ck_arch_resnet18.h5", lambda f: (f["model"].attrs.__setitem__("arch", "resnet18"),
                                                        f["model"].attrs.__setitem__("image_size", 20)))
derive("good_ckpt.h5", "ck_missing_param.h5", lambda f: f.__delitem__("model/classifier.fc3.bias"))
derive("good_ckpt.h5", "ck_misshaped.h5",
       lambda f: replace(f, "model/classifier.fc3.weight", np.zeros((10, 100), np.float32)))
derive("good_ckpt.h5", "ck_extra_param.h5",
       lambda f: f.__setitem__("model/classifier.fc4.weight", np.zeros((10, 10), np.float32)))
derive("good_ckpt.h5", "ck_int_param.h5",
       lambda f: replace(f, "model/feature_extractor.conv1.bias", np.zeros(32, np.int32)))
derive("good_ckpt.h5", "ck_mean_no_std.h5", lambda f: f["model"].attrs.__delitem__("std"))
derive("good_ckpt.h5", "ck_std_zero.h5", lambda f: f["model"].attrs.__setitem__("std", np.zeros(1, np.float32)))
derive("good_ckpt.h5", "ck_no_model_attr.h5", lambda f: f["model"].attrs.__delitem__("num_classes"))
print("OK")
