/* [meansparse] keys: MeanSparse post-processing (methods.md §2). Owned by
 * core/ops/meansparse.c and tools/cmd_meansparse.c. */
#define AL_CFG_MEANSPARSE(X, S)                                                                \
    X(S, alpha, DOUBLE, NONE, "0", 0, 100, "threshold alpha (one for every layer); 0 = exact bypass") \
    X(S, backward, ENUM, MS_BACKWARD, "exact", 0, 0,                                           \
      "exact (zero gradient inside the band, as the official autograd) or bpda (identity)")    \
    X(S, stats_batch, INT, NONE, "512", 1, 1048576, "batch of the statistics pass (train split)") \
    X(S, sweep, FLIST, NONE, "0,0.05,0.1,0.15,0.2,0.25", 0, 100, "alpha grid of the sweep")    \
    X(S, max_clean_drop, DOUBLE, NONE, "0.5", 0, 100,                                          \
      "sweep: keep alphas whose clean accuracy is within this many points of alpha = 0")
