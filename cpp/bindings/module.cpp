// The compiled core of cascade_routing. Users import `cascade_routing`, never `_core`.
#include "arrays.hpp"

PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
    m.doc() =
        "Compiled kernels of cascade_routing (C++17): supermodel search, batched search, "
        "strategy replay, PSD Cholesky. Same contracts as cascade_routing._reference.";
    m.attr("MAX_MODELS") = cascade_routing::kMaxModels;
    m.attr("PRUNE_SLACK") = cascade_routing::kPruneSlack;
    cascade_routing::bindings::bind_search(m);
    cascade_routing::bindings::bind_replay(m);
}
