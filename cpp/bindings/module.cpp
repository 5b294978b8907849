// The compiled core of cascade_routing. Users import `cascade_routing`, never `_core`.
#include <atomic>

#include "arrays.hpp"
#include "interrupt.hpp"

namespace py = pybind11;

namespace cascade_routing::bindings {
namespace {
// Set once at import; read by every call that can be interrupted.
std::atomic<unsigned long> main_thread_ident{0};
}  // namespace

void record_main_thread() {
    const unsigned long ident =
        py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    main_thread_ident.store(ident, std::memory_order_relaxed);
}

bool on_main_thread() {
    return PyThread_get_thread_ident() == main_thread_ident.load(std::memory_order_relaxed);
}

}  // namespace cascade_routing::bindings

PYBIND11_MODULE(_core, m, pybind11::mod_gil_not_used()) {
    m.doc() =
        "Compiled kernels of cascade_routing (C++17): supermodel search, batched search, "
        "strategy replay, PSD Cholesky, the prepared decider. Same contracts as "
        "cascade_routing._reference.";
    m.attr("MAX_MODELS") = cascade_routing::kMaxModels;
    m.attr("PRUNE_SLACK") = cascade_routing::kPruneSlack;
    m.attr("MAX_THREADS") = cascade_routing::kMaxThreads;
    m.def(
        "threads_used",
        [](py::handle n_threads, py::ssize_t n_rows) {
            if (n_rows < 0) throw py::value_error("n_rows must be >= 0");
            return cascade_routing::resolve_threads(
                cascade_routing::bindings::check_threads(n_threads),
                static_cast<std::size_t>(n_rows));
        },
        py::arg("n_threads"), py::arg("n_rows"),
        "Threads a batch of n_rows rows runs on when n_threads are asked for (capped at the "
        "cores available and at one per row).");
    cascade_routing::bindings::record_main_thread();
    cascade_routing::bindings::bind_search(m);
    cascade_routing::bindings::bind_replay(m);
    cascade_routing::bindings::bind_decider(m);
}
