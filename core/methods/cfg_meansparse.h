/* [meansparse] keys: MeanSparse post-processing (methods.md §2). Owned by
 * core/ops/meansparse.c and tools/cmd_meansparse.c (advlab meansparse). Defaults follow the
 * official code: statistics on the whole train split in batches of 512, alpha chosen by
 * APGD-CE (1 restart, 100 iterations) on the test split -- test-set tuning, as the reference;
 * sweep_split / sweep_offset / sweep_n select a held-out part instead. */
#define AL_CFG_MEANSPARSE(X, S)                                                                \
    X(S, alpha, DOUBLE, NONE, "0", 0, 100, "threshold alpha (one for every layer); 0 = exact bypass") \
    X(S, backward, ENUM, MS_BACKWARD, "exact", 0, 0,                                           \
      "exact (zero gradient inside the band, as the official autograd) or bpda (identity)")    \
    X(S, placement, STR, NONE, "bn", 0, 0,                                                     \
      "bn: between every BN and its ReLU (official WRN modules); act: before every ReLU "      \
      "(official add_custom_layer: also after residual sums)")                                 \
    X(S, stats_batch, INT, NONE, "512", 1, 1048576, "batch of the statistics pass (train split)") \
    X(S, stats_n, INT64, NONE, "0", 0, 1e12,                                                   \
      "statistics on the first n train rows; 0 = data.n_train, or the whole split")            \
    X(S, sweep, FLIST, NONE, "0,0.05,0.1,0.15,0.2,0.25", 0, 100, "alpha grid of the sweep")    \
    X(S, max_clean_drop, DOUBLE, NONE, "0.5", 0, 100,                                          \
      "sweep: keep alphas whose clean accuracy is within this many points of alpha = 0")       \
    X(S, sweep_attack, STR, NONE, "apgd-ce", 0, 0,                                             \
      "attack of the sweep: apgd-ce (the reference's AutoAttack custom ['apgd-ce'], 1 "        \
      "restart) or pgd (the [eval] PGD)")                                                      \
    X(S, sweep_steps, INT, NONE, "100", 1, 100000, "sweep attack iterations (APGD n_iter / PGD steps)") \
    X(S, sweep_split, STR, NONE, "", 0, 0, "split the sweep tunes on; empty = data.test_split") \
    X(S, sweep_offset, INT64, NONE, "0", 0, 1e12, "first row of the sweep points in sweep_split") \
    X(S, sweep_n, INT64, NONE, "0", 0, 1e12, "sweep points; 0 = eval.n_points (or all)")       \
    X(S, eval_offset, INT64, NONE, "0", 0, 1e12,                                               \
      "first test row of the final evaluation (e.g. 5000 with sweep rows [0, 5000): held out)")
