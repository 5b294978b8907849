// Supermodel search: the per-decision optimisation of cascade routing (docs/algorithm.md §3-§5).
//
// Pure C++17, no Python. The semantics are those of the NumPy reference kernels in
// python/cascade_routing/_reference.py, step by step: the same depth-first enumeration order,
// the same incremental row maxima, the same pruning test and tolerance, the same rounding and
// tie-breaking, and the same floating-point operations in the same order (the mean over
// samples uses NumPy's pairwise summation), so results agree with the reference bit for bit.
//
// All functions are reentrant: no mutable globals; every call brings its own workspace.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

namespace cascade_routing {

//! The largest number of models a search accepts (a supermodel is a 64-bit mask).
inline constexpr int kMaxModels = 64;
//! Absolute slack, relative to the scale of the values, that pruning leaves for rounding error.
inline constexpr double kPruneSlack = 1e-9;
//! Largest number of decimals utilities can be rounded to.
inline constexpr int kMaxDigits = 15;
//! The largest `n_threads` a call accepts; the threads actually used are fewer (resolve_threads).
inline constexpr int kMaxThreads = 1024;
//! A search reads its cancellation flag once every this many candidates (a power of two).
inline constexpr std::int64_t kCancelPollCandidates = 4096;

//! How the quality estimates are uncertain.
enum class Mode : int {
    exact = 0,        //!< exact means: Q(M) = max of the means
    independent = 1,  //!< independent estimates with standard deviations `sd`
    covariance = 2,   //!< full covariance given by its lower Cholesky factor `chol`
};

//! Outcome of a call: `ok`, or which precondition the input broke.
enum class Status : int {
    ok = 0,
    non_finite = 1,  //!< NaN or infinite input (or an overflow of the utility scale)
    bad_size = 2,    //!< k outside 1..kMaxModels, or no samples where samples are needed
    cancelled = 3,   //!< the cancellation flag was set: the call stopped, its outputs are void
};

//! Cooperative cancellation of a long call. A search reads `flag` every
//! kCancelPollCandidates candidates, a batch or replay also before every row; once it is set
//! the call stops and returns Status::cancelled. `poll(context)`, if given, is called at the
//! same points, just before `flag` is read, by every thread working on the call (and, every
//! few milliseconds, by the calling thread while it waits for the others): the hook may set
//! the flag (the bindings check for Ctrl-C there). It must be thread-safe and cheap.
struct Cancellation {
    const std::atomic<bool>* flag = nullptr;
    void (*poll)(void* context) = nullptr;
    void* context = nullptr;

    //! Run the hook, then tell whether the call must stop.
    bool stop() const {
        if (poll != nullptr) poll(context);
        return flag != nullptr && flag->load(std::memory_order_relaxed);
    }
};

//! Status of a batch: the first (lowest) row that failed, if any.
struct BatchStatus {
    Status status = Status::ok;
    std::size_t row = 0;
};

//! Search options shared by all queries of a call.
struct SearchOptions {
    std::int64_t max_depth = kMaxModels;  //!< largest supermodel size (run models included)
    bool force_order = true;              //!< new models must come after every run model
    bool prefixes_only = false;  //!< only prefixes m_0..m_j are candidates (optimal cascade)
    bool prune = true;           //!< drop children with a negative marginal gain (Lemma 1)
    int digits = 8;              //!< round utilities to this many decimals; -1 = no rounding
    bool use_avx = true;         //!< allow the AVX kernel where the CPU has it (same results)
    //! Quality bounds, lower < upper (infinite = no bound): every quality sample (exact mode:
    //! every mean) is clipped to [quality_lower, quality_upper] as soon as it is computed, so
    //! Q(M) = E[max_{i in M} clip(Z_i)] (still monotone and submodular: pruning stays exact).
    double quality_lower = -std::numeric_limits<double>::infinity();
    double quality_upper = std::numeric_limits<double>::infinity();
    //! Cancellation of the call (null = none); it must outlive the call.
    const Cancellation* cancel = nullptr;
};

//! Whether the quality bounds of `options` clip anything (the infinite defaults do not).
inline bool has_quality_bounds(const SearchOptions& options) noexcept {
    return options.quality_lower > -std::numeric_limits<double>::infinity() ||
           options.quality_upper < std::numeric_limits<double>::infinity();
}

//! Fixed standard-normal samples `(n_samples, k)`, row-major, shared by all candidates.
struct Normals {
    const double* data = nullptr;
    std::size_t n_samples = 0;
};

//! One query. Arrays have `k` entries (`chol`: k*k, row-major), and may be null when unused
//! (`sd` outside mode 1, `chol` outside mode 2).
struct SearchInput {
    const double* quality = nullptr;
    const double* cost = nullptr;
    double lam = 0.0;
    Mode mode = Mode::exact;
    const double* sd = nullptr;
    const double* chol = nullptr;
    const std::uint8_t* ran = nullptr;  //!< nonzero = the model has run
    bool prefer_expensive = false;      //!< ties go to the dearer supermodel
};

//! Best supermodel of one query.
struct SearchResult {
    int next_model = -1;          //!< model to run next, -1 = stop
    std::uint64_t mask = 0;       //!< members of the best supermodel (bit i = model i)
    bool mask_is_prefix = false;  //!< the best candidate came from the prefix enumeration
    double utility = 0.0;
    double quality = 0.0;
    double cost = 0.0;
    std::int64_t evaluated = 0;  //!< candidates scored (pruned children included)
};

//! Scratch memory of a search, sized once and reused across the queries of one thread.
class SearchWorkspace {
public:
    //! Size the buffers for `k` models and `n_samples` samples (0 for exact means).
    void reserve(int k, std::size_t n_samples);
    //! Use `normals` (n_samples, k) for the following sampled searches (call after `reserve`).
    //! With `transpose` they are copied column by column into the workspace (worth it when
    //! many queries share them); otherwise they are read in place and must outlive the use.
    void set_normals(const Normals& normals, int k, bool transpose = true);
    //! Compute the quality samples of model `i` (column i of Z), clipped to the quality
    //! bounds of `options`, and their largest |value|.
    void fill_column(int i, double quality, double sd, const SearchOptions& options);
    void fill_column_chol(int i, double quality, const double* chol_row,
                          const SearchOptions& options);
    //! For a column i written into `z_` by other means: clip it to the quality bounds of
    //! `options` and record its largest |value| (what the fillers above end with).
    void finish_column(int i, const SearchOptions& options);

    // Internal state, exposed for the search kernels (treat as private).
    int k_ = 0;
    std::size_t ns_ = 0;
    std::unique_ptr<double[]> buffer_;
    std::size_t capacity_ = 0;
    double* normals_t_ = nullptr;  // (k, ns): column j = normals[:, j]
    const double* u_ = nullptr;    // normals[s, j] = u_[j * u_column_step_ + s * u_sample_step_]
    std::size_t u_column_step_ = 0;
    std::size_t u_sample_step_ = 0;
    double* z_ = nullptr;        // (k, ns): column i = quality samples of model i
    double* rowmax_ = nullptr;   // (k + 1, ns): row maxima per depth of the search
    double* scratch_ = nullptr;  // (ns,)
    // Per-column and per-depth scratch, written before it is read (left uninitialised).
    double col_maxabs_[kMaxModels];
    double col_check_[kMaxModels];        // NaN iff the column holds a non-finite value
    double col_sum_[kMaxModels];          // numpy_sum of the column
    const double* rows_[kMaxModels + 1];  // row maxima of the search's node at each depth
    double qual_[kMaxModels + 1];
    double cst_[kMaxModels + 1];
    std::uint64_t pmask_[kMaxModels + 1];
    int nxt_[kMaxModels + 1];
};

//! Rounding scale `10^digits` (exact literals) for digits in 0..15; 0 = no rounding.
double rounding_scale(int digits) noexcept;

//! Sum of `n` doubles exactly as NumPy's `np.add.reduce` sums a contiguous float64 array
//! (pairwise, 8-way unrolled blocks of at most 128 values).
double numpy_sum(const double* values, std::size_t n) noexcept;

//! Lower Cholesky factor of a PSD matrix `cov` (k, k); non-positive pivots give zero columns.
void cholesky_psd(const double* cov, std::size_t k, double* lower) noexcept;

//! Best supermodel `M ⊇ ran` of one query (see `search_kernel` in _reference.py).
//! `ws` must have been `reserve`d for (k, n_samples) and given the normals (sampled modes).
Status search(const SearchInput& in, int k, const SearchOptions& options, SearchWorkspace& ws,
              SearchResult& out);

//! As `search`, with the quality samples already in `ws` (every column filled with
//! `fill_column` / `fill_column_chol` with the same `options`); `in.quality` is then only
//! used in mode 0 (where the search clips the means itself).
Status search_prepared(const SearchInput& in, int k, const SearchOptions& options,
                       SearchWorkspace& ws, SearchResult& out);

//! Write the (k,) uint8 mask of a result as the reference does (run models keep their `ran`
//! value, other members are 1).
void write_mask(const SearchResult& result, const std::uint8_t* ran, int k,
                std::uint8_t* out) noexcept;

//! A batch of `n` queries, row-major: quality, cost, ran (n, k); lam, prefer_expensive (n,);
//! sd (n, k) in mode 1; chol (n, k, k) in mode 2.
struct BatchInput {
    const double* quality = nullptr;
    const double* cost = nullptr;
    const double* lam = nullptr;
    Mode mode = Mode::exact;
    const double* sd = nullptr;
    const double* chol = nullptr;
    const std::uint8_t* ran = nullptr;
    const std::uint8_t* prefer_expensive = nullptr;
};

//! Outputs of a batch: next_model, utility, quality, cost, evaluated (n,); mask (n, k).
struct BatchOutput {
    std::int64_t* next_model = nullptr;
    std::uint8_t* mask = nullptr;
    double* utility = nullptr;
    double* quality = nullptr;
    double* cost = nullptr;
    std::int64_t* evaluated = nullptr;
};

//! `search` over `n` queries on `n_threads` threads (0 = one per core; capped at the cores and
//! rows, see resolve_threads). Results do not depend on the number of threads. Throws only
//! std::bad_alloc.
BatchStatus search_batch(const BatchInput& in, std::size_t n, int k, const Normals& normals,
                         const SearchOptions& options, const BatchOutput& out, int n_threads);

//! Number of threads actually used for `n_rows` rows when `n_threads` are asked for: at most
//! one per core (std::thread::hardware_concurrency; 0 asks for exactly that), and at most one
//! per row. More threads than cores would only add thread starts and per-thread workspaces.
int resolve_threads(int n_threads, std::size_t n_rows) noexcept;

//! Worst-case work of one decision before pruning (docs/algorithm.md §11): the candidate
//! supermodels, supersets of the `n_ran` run models with at most `max_depth` members
//! (sum of C(k - n_ran, i) for i = 1..max_depth - n_ran; with `prefixes_only` just the
//! max_depth - n_ran longer prefixes), times max(n_samples, 1).
double search_work(int k, int n_ran, std::int64_t max_depth, bool prefixes_only,
                   std::size_t n_samples) noexcept;

}  // namespace cascade_routing
