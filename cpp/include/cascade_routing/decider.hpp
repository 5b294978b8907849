// A prepared decider: the policy of a fitted strategy, its Sobol normals and one Cholesky
// factor (or standard deviations) per run-set, held once so that a decision only takes the
// new means and costs (docs/decider.md).
//
// Pure C++17, no Python. A decision is the `search` of search.hpp with the same inputs the
// strategy's next_model path passes (the step's multiplier, the depth clamp, the run-set's
// factor), so decisions are bit-identical to it. A Decider is immutable once built: any number
// of threads may call `decide` / `decide_batch` on one decider at once (the scratch memory is
// per thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cascade_routing/search.hpp"

namespace cascade_routing {

//! Outcome of building or using a decider (the C ABI returns the same numbers).
enum class DeciderStatus : int {
    ok = 0,
    non_finite = 1,      //!< a quality or cost is NaN or infinite, or a cost is negative
    bad_size = 2,        //!< a size outside its range (k, samples, steps, run-sets)
    bad_runset = 3,      //!< `ran` names a model >= k, or is not a prefix of a cascade
    missing_runset = 4,  //!< no factor for this run-set in the table (uncertain modes)
    bad_argument = 5,    //!< an argument or field of the spec is invalid (see the message)
    cancelled = 6,       //!< a batch was cancelled
    bad_file = 7,        //!< a decider file that is unreadable, corrupted or inconsistent
};

//! Everything a decider is built from; arrays are copied, so they need not outlive it.
//! The default cap on one decision's work: 2^28, the engine's DEFAULT_MAX_WORK.
inline constexpr double kDefaultMaxWork = 268435456.0;

struct DeciderSpec {
    int k = 0;                          //!< number of models, 1..kMaxModels (internal model order)
    Mode mode = Mode::exact;            //!< exact means, independent sd, or full covariance
    const double* normals = nullptr;    //!< (n_samples, k) row-major; unused in exact mode
    std::size_t n_samples = 0;          //!< 0 in exact mode, >= 1 otherwise
    const double* lam_cheap = nullptr;  //!< (n_steps,): λ at step j = λ[min(j, n_steps-1)]
    const double* lam_expensive = nullptr;  //!< (n_steps,): the expensive policy (ties: dearer)
    std::size_t n_steps = 0;                //!< 1..kMaxModels
    SearchOptions options;  //!< max_depth, force_order, prefixes_only, prune, digits, bounds
    const std::uint64_t* runsets = nullptr;  //!< (n_runsets,) bit masks, distinct, < 2^k
    const double* factors = nullptr;         //!< (n_runsets, k, k) Cholesky or (n_runsets, k) sd
    std::size_t n_runsets = 0;
    //! Cap on the worst-case work of one decision (candidate supermodels from the empty
    //! run-set times samples), as a strategy's `max_work`; a larger configuration is refused,
    //! so a decision cannot run for hours (docs/decider.md).
    double max_work = kDefaultMaxWork;
};

//! One decision.
struct Decision {
    int next_model = -1;         //!< model to run next (internal order), -1 = stop
    std::uint64_t members = 0;   //!< the best supermodel, run models included
    double utility = 0.0;        //!< its unrounded utility Q - λC
    std::int64_t evaluated = 0;  //!< candidates scored
};

class Decider {
public:
    //! Check the spec and copy it. Returns the status and, on failure, a message naming the
    //! field in `error` (never throws but std::bad_alloc).
    static DeciderStatus create(const DeciderSpec& spec, Decider& out, std::string* error);

    int k() const { return k_; }
    Mode mode() const { return mode_; }
    std::size_t n_samples() const { return ns_; }
    std::size_t n_steps() const { return lam_cheap_.size(); }
    std::size_t n_runsets() const { return runsets_.size(); }
    const SearchOptions& options() const { return options_; }
    //! Whether the table has a factor for run-set `ran` (always true in exact mode).
    bool has_runset(std::uint64_t ran) const;
    //! The stored run-set masks (ascending) and their factors, in the same order.
    const std::vector<std::uint64_t>& runsets() const { return runsets_; }
    const std::vector<double>& factors() const { return factors_; }
    const std::vector<double>& lam_cheap() const { return lam_cheap_; }
    const std::vector<double>& lam_expensive() const { return lam_expensive_; }
    //! Normals (n_samples, k) row-major, as given.
    const std::vector<double>& normals() const { return normals_; }

    //! The decision for one query: means `quality` and costs `cost` (k,), run-set `ran`
    //! (bit i = model i has run), and whether the query uses the expensive policy. Checks
    //! only the run-set and that the k means and costs are finite (costs >= 0).
    DeciderStatus decide(const double* quality, const double* cost, std::uint64_t ran,
                         bool expensive, Decision& out) const;

    //! `decide` for n rows (quality, cost: (n, k); ran, expensive: (n,)) on `n_threads`
    //! threads (0 = one per core). Outputs (n,); a failed row gets next_model -1, members 0,
    //! utility NaN, and the lowest failed row and its status are returned in `failed_row`.
    DeciderStatus decide_batch(std::size_t n, const double* quality, const double* cost,
                               const std::uint64_t* ran, const std::uint8_t* expensive,
                               std::int64_t* next_model, std::uint64_t* members, double* utility,
                               std::size_t* failed_row, int n_threads = 1,
                               const Cancellation* cancel = nullptr) const;

private:
    const double* factor(std::uint64_t ran) const;

    int k_ = 0;
    Mode mode_ = Mode::exact;
    std::size_t ns_ = 0;
    SearchOptions options_;
    std::vector<double> lam_cheap_, lam_expensive_;
    std::vector<double> normals_;         // (ns, k) as given
    std::vector<double> normals_t_;       // (k, ns): column j = normals[:, j]
    std::vector<std::uint64_t> runsets_;  // ascending
    std::vector<double> factors_;         // per run-set, in the order of runsets_
    std::vector<std::int32_t> dense_;     // 2^k slots (k <= kDeciderDenseModels), -1 = none
};

//! Decider files (Decider.save_c in Python): magic, format version, fixed header size.
inline constexpr char kDeciderFileMagic[8] = {'C', 'R', 'D', 'E', 'C', 'I', 'D', 'E'};
inline constexpr std::uint32_t kDeciderFileVersion = 1;
inline constexpr std::size_t kDeciderFileHeader = 96;
//! Largest decider file read (256 MiB).
inline constexpr std::size_t kDeciderFileMaxBytes = std::size_t{1} << 28;

//! CRC-32 (IEEE 802.3, as zlib.crc32) of `n` bytes, continuing from `crc`.
std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept;

//! Read a decider file (layout in docs/decider.md §6). A file that is missing, truncated,
//! corrupted (CRC) or inconsistent gives a status other than ok and a message in `error`.
DeciderStatus read_decider_file(const char* path, Decider& out, std::string* error);

//! Up to this many models the run-set table is indexed directly (2^k slots), above by a
//! binary search over the sorted masks.
inline constexpr int kDeciderDenseModels = 16;

}  // namespace cascade_routing
