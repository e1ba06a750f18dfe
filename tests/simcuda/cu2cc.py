#!/usr/bin/env python3
"""cu2cc.py SRC OUT: rewrite one CUDA source (cuda/*.cu, *.cuh) as C++ for simcuda.

Only two constructs change; everything else compiles as written against
tests/simcuda/include (whose cuda_runtime.h maps __global__, __shared__, threadIdx, the
shuffles and __syncthreads onto the emulator):
  kernel<<<grid, block, smem, stream>>>(args)  ->  simcuda::cfg(__FILE__, __LINE__, grid,
                                                   block, smem, stream).bind(kernel, "kernel")(args)
  (kernel may be a template-id such as k<float>; its label is then "k<float>")
  extern __shared__ T name[];                  ->  T *name = (T *)simcuda::dyn_smem();
A '#line 1 "cuda/<file>"' directive keeps compiler messages and __FILE__ on the original.
Line breaks inside a launch configuration are kept, so line numbers do not move."""
import os
import re
import sys

LAUNCH = re.compile(r"\b([A-Za-z_]\w*(?:<[^<>();]*>)?)\s*<<<(.*?)>>>", re.S)
DYN_SMEM = re.compile(r"extern\s+__shared__\s+([A-Za-z_][\w\s]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;")


def launch(m):
    name, conf = m.group(1), m.group(2)
    nl = conf.count("\n")
    conf = conf.replace("\n", " ")
    eol = m.string.find("\n", m.end())
    in_macro = m.string[m.end():eol].rstrip().endswith("\\")
    label = "#" + name if in_macro else '"%s"' % name  # a macro parameter: its argument's name
    return ('simcuda::cfg(__FILE__, __LINE__, %s).bind(%s, %s)' % (conf, name, label)) + "\n" * nl


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    n_launch = len(LAUNCH.findall(text))
    text = LAUNCH.sub(launch, text)
    text = DYN_SMEM.sub(lambda m: "%s *%s = (%s *)simcuda::dyn_smem();" %
                        (m.group(1), m.group(2), m.group(1)), text)
    if "<<<" in text or re.search(r"extern\s+__shared__", text):
        sys.exit("cu2cc: %s: a launch or extern __shared__ form this script does not know" % src)
    rel = "cuda/" + os.path.basename(src)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write('#line 1 "%s"\n' % rel)
        f.write(text)
    os.replace(tmp, out)
    if os.environ.get("CU2CC_VERBOSE"):
        print("cu2cc: %s: %d launches" % (rel, n_launch))


if __name__ == "__main__":
    main()
