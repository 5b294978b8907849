// Replay of a routing strategy over many queries with two-phase (ex-ante / post-hoc)
// estimates: the inner loop of fitting λ (docs/algorithm.md §3, §8). Pure C++17, no Python.
// Semantics: `replay_two_phase_kernel` in python/cascade_routing/_reference.py.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cascade_routing/search.hpp"

namespace cascade_routing {

enum class Strategy : int {
    supermodel_search = 0,  //!< cascade routing / optimal cascade / routing via `search`
    threshold_cascade = 1,  //!< run in order while the post-hoc estimate is below a threshold
};

//! Inputs of a replay. All `(n, k)` arrays are row-major. A model's estimates switch from
//! ex-ante to post-hoc once it has run.
struct ReplayInput {
    const double* ante_quality = nullptr;
    const double* post_quality = nullptr;
    const double* ante_sd = nullptr;  //!< used when `use_sd` (strategy 0)
    const double* post_sd = nullptr;  //!< used when `use_sd` (strategy 0)
    const double* ante_cost = nullptr;
    const double* post_cost = nullptr;
    const double* true_quality = nullptr;
    const double* true_cost = nullptr;
    const double* lambdas = nullptr;                 //!< one per step j = |R|; the last is reused
    std::size_t n_lambdas = 0;                       //!< at least 1 for strategy 0
    const std::uint8_t* prefer_expensive = nullptr;  //!< (n,) tie-breaking coin per query
    bool use_sd = false;
    Strategy strategy = Strategy::supermodel_search;
    const double* thresholds = nullptr;  //!< at least k - 1 entries for strategy 1
    bool select_last = false;            //!< answer = last model run (else best post-hoc estimate)
};

//! Outputs: selected, n_run (n,) int64; order (n, k) int64, -1 padded; cost, quality (n,).
struct ReplayOutput {
    std::int64_t* selected = nullptr;
    std::int64_t* n_run = nullptr;
    std::int64_t* order = nullptr;
    double* cost = nullptr;
    double* quality = nullptr;
};

//! Replay `n` queries with `k` models on `n_threads` threads (0 = one per core; capped at the
//! cores and rows, see resolve_threads). Results do not depend on the number of threads.
//! Throws only std::bad_alloc.
BatchStatus replay_two_phase(const ReplayInput& in, std::size_t n, int k, const Normals& normals,
                             const SearchOptions& options, const ReplayOutput& out, int n_threads);

}  // namespace cascade_routing
