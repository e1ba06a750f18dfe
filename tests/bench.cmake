# bench_smoke: every benchmark phase runs at tiny size and prints well-formed JSON (style rule 26).
add_test(NAME bench_smoke COMMAND bash -c
  "set -e; $<TARGET_FILE:advlab> bench --arch smallcnn --batch 4 --min-time 0.05 --warmup 0 --steps-train 1 --steps-eval 1 > bench_smoke.jsonl; \
   $<TARGET_FILE:advlab> bench --arch wrn-16-1 --batch 2 --min-time 0.05 --warmup 0 --steps-train 1 --steps-eval 1 >> bench_smoke.jsonl; \
   ${AL_PYTHON3} -c \"import json,sys; r=[json.loads(l) for l in open('bench_smoke.jsonl')]; assert len(r)==8, len(r); assert all(x['median_ms']>0 and x['gflops']>0 for x in r); assert all(x['device']=='cpu' and x['layout']=='nchw' and x['graphs']==0 and x['deterministic']==1 for x in r), r[0]; print('bench_smoke: ok', len(r))\"")
set_tests_properties(bench_smoke PROPERTIES LABELS "cpu;asan" TIMEOUT 300 WORKING_DIRECTORY ${AL_TESTDATA})
