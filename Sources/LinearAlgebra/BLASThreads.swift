/// The number of threads OpenBLAS uses for BLAS and LAPACK calls in this process.
///
/// OpenBLAS (pthread build) defaults to every core. Set it to 1 when parallelising above BLAS
/// (several tasks each calling BLAS would oversubscribe the cores) and in benchmarks, which must
/// state their thread count. Process-wide state: set it once, early, from one place.
public enum BLASThreads {
    /// Current OpenBLAS thread count (`openblas_get_num_threads`). Setting it calls
    /// `openblas_set_num_threads`; values below 1 trap.
    public static var count: Int {
        get { BLAS.threadCount }
        set {
            precondition(newValue >= 1, "BLAS thread count must be ≥ 1, got \(newValue)")
            BLAS.setThreadCount(newValue)
        }
    }
}
